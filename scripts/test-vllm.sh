#!/usr/bin/env bash
# Run the `vllm`-marked tests (real vLLM CPU engines) in the environment that
# scripts/vllm-cpu-env.sh builds. Extra arguments go to pytest.
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
exec "$PY" -m pytest -m vllm -p no:cacheprovider "$@" packages/coordexp-backends tests/test_backends_vl.py \
    tests/test_stage2_vllm_server.py tests/test_eval_vllm.py
