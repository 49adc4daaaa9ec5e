#!/usr/bin/env bash
# The tiny Ollama model of the local catalog's tiny-ollama-cpu, made here and
# pushed to the local registry (no model hub is reachable):
#   hack/ollama_model.sh REGISTRY [NAME]
#     REGISTRY  where to push, e.g. $(cluster/cluster.sh registry) (127.0.0.1:5000)
#     NAME      namespace/model:tag (default ai-serving/tiny-llama:latest)
# 1. a llama-type GGUF with random weights: tests/fixtures/models/ollama/make_tiny_gguf.py
#    with PyPI's gguf (requirements.txt beside it) in a venv of its own, cached under
#    ~/.cache/creativeflow-ai-serving/ollama by the script's and the pins' hash;
# 2. `ollama create` from the Modelfile beside it on a local `ollama serve` (the binary of
#    cluster/build.sh ollama, on loopback, a models directory of its own), and one
#    generation, to show the model loads before it is pushed;
# 3. `ollama push --insecure REGISTRY/NAME` (Ollama speaks the registry v2 protocol).
# Nothing is done when the registry already has NAME with this GGUF as its model layer.
# The pods pull it as $(cluster/cluster.sh pod-registry)/NAME: the same storage.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=cluster/lib.sh
. "${root}/cluster/lib.sh"
registry=${1:?usage: $0 REGISTRY [NAMESPACE/MODEL:TAG]}
name=${2:-ai-serving/tiny-llama:latest}
fixture="${root}/tests/fixtures/models/ollama"
work="${CACHE_DIR}/ollama"
mkdir -p "${work}"
model="${registry}/${name}"
repository=${name%:*}
tag=${name##*:}

# ---- 1. the GGUF
key=$(cat "${fixture}/make_tiny_gguf.py" "${fixture}/requirements.txt" | sha256sum | cut -c1-12)
gguf="${work}/tiny-llama-${key}.gguf"
if [[ ! -s "${gguf}" ]]; then
  venv="${CACHE_DIR}/venv-gguf-$(sha256sum "${fixture}/requirements.txt" | cut -c1-12)"
  exec 9>"${CACHE_DIR}/venv.lock"
  flock 9
  if [[ ! -f "${venv}/.complete" ]]; then
    log "creating ${venv} (PyPI's gguf for the tiny model)"
    rm -rf "${venv}"
    python3 -m venv "${venv}"
    "${venv}/bin/pip" install --quiet --disable-pip-version-check -r "${fixture}/requirements.txt" >&2 ||
      die "could not install ${fixture}/requirements.txt into ${venv}"
    touch "${venv}/.complete"
  fi
  flock -u 9
  "${venv}/bin/python" "${fixture}/make_tiny_gguf.py" "${gguf}.tmp" || die "make_tiny_gguf.py failed"
  mv "${gguf}.tmp" "${gguf}"
  log "wrote ${gguf} ($(stat -c %s "${gguf}") bytes)"
fi
digest="sha256:$(sha256sum "${gguf}" | cut -d' ' -f1)"

manifest() {
  curl -fsS --noproxy '*' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://${registry}/v2/${repository}/manifests/${tag}" 2>/dev/null
}
# (Matched on the whole text: `| grep -q` under pipefail fails if curl is still writing.)
if [[ "$(manifest)" == *"\"${digest}\""* ]]; then
  log "${model} is in the registry with this GGUF (${digest}): nothing to do"
  exit 0
fi

# ---- 2. ollama create, on a server of our own
"${root}/cluster/build.sh" ollama
ollama="${BIN_DIR}/ollama-${OLLAMA_VERSION}/ollama"
tmp=$(mktemp -d "${work}/create.XXXXXX")
serve_pid=""
cleanup() {
  # The server and the runner it started share the process group setsid made.
  # (Each kill may find the group gone: under set -e a failed last command of a
  # && list would end the script with status 1 after a push that worked.)
  if [[ -n "${serve_pid}" ]] && kill -- "-${serve_pid}" 2>/dev/null; then
    sleep 1
    kill -9 -- "-${serve_pid}" 2>/dev/null || true
  fi
  rm -rf "${tmp}"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export OLLAMA_HOST="127.0.0.1:${port}"
mkdir -p "${tmp}/home" "${tmp}/models" "${tmp}/context"
HOME="${tmp}/home" OLLAMA_MODELS="${tmp}/models" setsid "${ollama}" serve >"${work}/serve.log" 2>&1 </dev/null &
serve_pid=$!
for _ in $(seq 1 120); do
  curl -fsS --noproxy '*' -o /dev/null "http://${OLLAMA_HOST}/" 2>/dev/null && break
  kill -0 "${serve_pid}" 2>/dev/null || die "ollama serve exited: $(tail -n 5 "${work}/serve.log")"
  sleep 0.25
done
cp "${fixture}/Modelfile" "${tmp}/context/Modelfile"
cp "${gguf}" "${tmp}/context/tiny-llama.gguf"
log "ollama create ${model}"
HOME="${tmp}/home" "${ollama}" create "${model}" -f "${tmp}/context/Modelfile" >"${work}/create.log" 2>&1 ||
  die "ollama create failed: $(tail -n 5 "${work}/create.log")"
started=${SECONDS}
answer=$(curl -fsS --noproxy '*' -m 300 -H 'Content-Type: application/json' "http://${OLLAMA_HOST}/api/generate" \
  -d "{\"model\": \"${model}\", \"prompt\": \"hello\", \"stream\": false, \"options\": {\"num_predict\": 8, \"seed\": 1}}") ||
  die "the model does not generate on a local ollama serve: $(tail -n 20 "${work}/serve.log")"
[[ "${answer}" == *'"done":true'* ]] || die "unexpected answer of /api/generate: ${answer}"
log "it generates (first request, load included, $((SECONDS - started)) s): $(python3 -c 'import json, sys; a = json.loads(sys.argv[1]); print("%d tokens, response %r" % (a.get("eval_count", 0), a.get("response")))' "${answer}")"

# ---- 3. push
log "ollama push --insecure ${model}"
HOME="${tmp}/home" "${ollama}" push --insecure "${model}" >"${work}/push.log" 2>&1 ||
  die "ollama push failed: $(tail -n 5 "${work}/push.log")"
[[ "$(manifest)" == *"\"${digest}\""* ]] || die "the registry has no ${repository}:${tag} with layer ${digest} after the push"
log "pushed ${model} (model layer ${digest})"
