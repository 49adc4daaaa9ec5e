#!/usr/bin/env bash
# The project's checks, in the order `make test` runs them:
#   hack/test.sh all | lint | sanity | unit | integration
# Expects the venv's bin on PATH (the Makefile puts it there).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
export ANSIBLE_CONFIG="${root}/ansible.cfg"
venv=$(hack/venv.sh)
export PATH="${venv}/bin:${PATH}"

step() { printf '\n==== %s ====\n' "$*"; }

lint() {
  step "yamllint"
  yamllint --strict .
  step "ansible-lint (profile: production)"
  ansible-lint
  step "role argument specs match defaults"
  python hack/check_argument_specs.py
  step "changelog fragments"
  antsibull-changelog lint
}

sanity() {
  step "ansible-test sanity"
  # A venv of its own: ansible-test installs each test's pinned requirements
  # into the Python it runs with (its --venv mode needs a download we cannot make).
  local core sanity_venv
  core=$(python -c 'import ansible.release as r; print(r.__version__)')
  sanity_venv="$(dirname "${venv}")/sanity-ansible-core-${core}"
  if [[ ! -f "${sanity_venv}/.complete" ]]; then
    rm -rf "${sanity_venv}"
    python3 -m venv "${sanity_venv}"
    "${sanity_venv}/bin/pip" install --quiet --disable-pip-version-check "ansible-core==${core}"
    touch "${sanity_venv}/.complete"
  fi
  local pip_version
  pip_version=$(grep -oP "^\s+pip='\K[0-9.]+" "${sanity_venv}"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py)
  mkdir -p ~/.ansible/test/cache
  cp hack/get_pip_offline.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
  # ansible-test wants the collection at ansible_collections/<ns>/<name>, with
  # the collections it imports from beside it.
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "${tmp}"' RETURN
  local dest="${tmp}/ansible_collections/creativeflow/ai_serving"
  mkdir -p "${dest}" "${tmp}/ansible_collections/kubernetes"
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "${dest}/" --
  cp -r "${venv}"/lib/python3*/site-packages/ansible_collections/kubernetes/core "${tmp}/ansible_collections/kubernetes/"
  # Our own tooling and the server are not collection content.
  local excludes=() d
  for d in tests/integration custom_server cluster hack; do
    [[ -e "${dest}/${d}" ]] && excludes+=(--exclude "${d}/")
  done
  (cd "${dest}" && PATH="${sanity_venv}/bin:${PATH}" ansible-test sanity --requirements --color no \
    --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "${excludes[@]}")
}

unit() {
  step "unit tests"
  pytest tests/unit
}

server() {
  step "custom_server tests (real server processes, schemathesis, SIGTERM drain)"
  # The server has its own dependencies (FastAPI, scikit-learn, ONNX Runtime...),
  # so its own venv, keyed like the main one. It holds the dependencies only: the
  # server's source comes from this checkout through PYTHONPATH, as an editable
  # install would tie the shared venv to whichever clone created it.
  local key server_venv
  key=$( (echo deps-only; cat custom_server/requirements-dev.txt) | sha256sum | cut -c1-12)
  server_venv="$(dirname "${venv}")/custom-server-venv-${key}"
  (
    exec 9>"$(dirname "${venv}")/custom-server-venv.lock"
    flock 9
    if [[ ! -f "${server_venv}/.complete" ]]; then
      rm -rf "${server_venv}"
      python3 -m venv "${server_venv}"
      "${server_venv}/bin/pip" install --quiet --disable-pip-version-check \
        -r custom_server/requirements-dev.txt
      touch "${server_venv}/.complete"
    fi
  )
  PYTHONPATH="${root}/custom_server/src${PYTHONPATH:+:${PYTHONPATH}}" \
    "${server_venv}/bin/pytest" -c custom_server/pyproject.toml --rootdir custom_server custom_server/tests
}

integration() {
  step "integration tests (cluster: ${AI_SERVING_KUBECONFIG:-local kwok cluster})"
  # The slowest tests in the log: where CI's 90 minutes go.
  pytest tests/integration --durations=25
}

case "${1:-all}" in
  all) lint; sanity; unit; server; integration ;;
  lint | sanity | unit | server | integration) "$1" ;;
  *) echo "usage: $0 all|lint|sanity|unit|server|integration" >&2; exit 2 ;;
esac
