#!/usr/bin/env bash
# Create (once) the Python virtualenv that `make test` and `make demo` use, under
# ~/.cache keyed by the requirement files, and link the checkout into
# .collections/ so ansible resolves creativeflow.ai_serving from the repo.
# Prints the venv's path on stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${AI_SERVING_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/creativeflow-ai-serving}
python=${PYTHON:-python3}

key=$(cat "${root}/requirements.txt" "${root}/requirements-dev.txt" | sha256sum | cut -c1-12)
venv="${cache}/venv-${key}"
mkdir -p "${cache}"
# One creator at a time: parallel test runs may all ask for the venv.
exec 9>"${cache}/venv.lock"
flock 9
if [[ ! -x "${venv}/bin/ansible-playbook" || ! -f "${venv}/.complete" ]]; then
  command -v "${python}" >/dev/null || { echo "ERROR: ${python} not found; install Python >= 3.11" >&2; exit 1; }
  echo "[venv] creating ${venv}" >&2
  rm -rf "${venv}"
  "${python}" -m venv "${venv}"
  "${venv}/bin/pip" install --quiet --disable-pip-version-check -r "${root}/requirements-dev.txt" >&2
  touch "${venv}/.complete"
fi
flock -u 9

link="${root}/.collections/ansible_collections/creativeflow/ai_serving"
if [[ ! -L "${link}" ]]; then
  mkdir -p "$(dirname "${link}")"
  ln -sfn ../../.. "${link}"
fi
echo "${venv}"
