#!/usr/bin/env bash
# Run the `vllm`-marked tests (real vLLM CPU engines) in the environment that
# scripts/vllm-cpu-env.sh builds. Extra arguments go to pytest; given a test path (file,
# folder or node id), only that runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.vllm-cpu-venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "no vLLM CPU environment at $ROOT/.vllm-cpu-venv: run bash scripts/vllm-cpu-env.sh" >&2
    exit 1
fi
export OMP_NUM_THREADS=1
# Fast, in-process engine start and a small KV cache on CPU (see docs/rollout-backends.md).
export VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1
cd "$ROOT"
# Every `vllm`-marked test of the repository, unless a test path is given.
paths=(packages tests)
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
        paths=()
        break
    fi
done
exec "$PY" -m pytest -m vllm -p no:cacheprovider "$@" "${paths[@]}"
