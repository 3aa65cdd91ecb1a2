#!/usr/bin/env bash
# Static checks over the whole workspace: lint, formatting, types. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run ruff check .
uv run ruff format --check .
uv run mypy
