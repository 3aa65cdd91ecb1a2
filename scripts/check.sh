#!/usr/bin/env bash
# Static checks over the whole workspace: locks, lint, formatting, types. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both locks must match the pyprojects (the vLLM CPU env installs the workspace packages,
# so a dependency change in any package needs `uv lock --project scripts/vllm-cpu` too).
uv lock --check --quiet
uv lock --check --quiet --project scripts/vllm-cpu
uv run ruff check .
uv run ruff format --check .
uv run mypy
