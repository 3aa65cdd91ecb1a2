#!/usr/bin/env bash
# Launch a CoordExp training run after a strict preflight of its config.
#
#   scripts/launch.sh [--dry-run] CONFIG [KEY=VALUE ...]
#
# 1. `coordexp-preflight --config CONFIG --override KEY=VALUE ...` loads and validates the
#    config and prints shell assignments; an invalid config stops here, every problem listed.
# 2. The assignments are eval'ed and ROLLOUT_CONTRACT_JSON is validated
#    (`coordexp-preflight --check`): a malformed or incomplete contract stops the launch.
# 3. In vLLM server mode each server's /health is probed (at most 5 s per server); set
#    COORDEXP_SKIP_SERVER_CHECK=1 to skip it (e.g. while the servers are still starting).
# 4. `coordexp-train --config CONFIG --override KEY=VALUE ...` runs; with NPROC_PER_NODE=N
#    (N > 1) it runs as `torchrun --nproc_per_node N -m coordexp_train ...`.
#    `--dry-run` prints that command instead of running it.
#
# Tools come from PATH (an activated environment, or under `uv run`), else `uv run` in
# this repository.
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
}

tool() {
    if command -v "$1" >/dev/null 2>&1; then
        "$@"
    else
        uv run --project "$(dirname "$0")/.." --quiet "$@"
    fi
}

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
if [[ $# -lt 1 || "$1" == -* ]]; then
    usage
    exit 2
fi
config=$1
shift
overrides=()
for kv in "$@"; do
    if [[ "$kv" != *=* ]]; then
        echo "launch: expected KEY=VALUE overrides after the config, got '$kv'" >&2
        exit 2
    fi
    overrides+=(--override "$kv")
done

if ! preflight=$(tool coordexp-preflight --config "$config" "${overrides[@]}"); then
    echo "launch: preflight rejected $config (see above)" >&2
    exit 1
fi
eval "$preflight"
if ! tool coordexp-preflight --check "$ROLLOUT_CONTRACT_JSON"; then
    echo "launch: refusing to launch $config" >&2
    exit 1
fi

echo "launch: $COORDEXP_TRAINER_VARIANT, rollout backend $COORDEXP_ROLLOUT_BACKEND${COORDEXP_VLLM_MODE:+ ($COORDEXP_VLLM_MODE)}, output $COORDEXP_OUTPUT_DIR" >&2

if [[ "$COORDEXP_VLLM_MODE" == server && "${COORDEXP_SKIP_SERVER_CHECK:-0}" != 1 ]]; then
    if ! command -v curl >/dev/null 2>&1; then
        echo "launch: curl is needed to probe the vLLM servers (or set COORDEXP_SKIP_SERVER_CHECK=1)" >&2
        exit 2
    fi
    for url in $COORDEXP_SERVER_BASE_URLS; do
        if ! curl -fsS --max-time 5 -o /dev/null "${url%/}/health"; then
            echo "launch: vLLM server $url is not healthy (GET ${url%/}/health failed);" \
                "start it, fix rollout_matching.vllm.server.servers, or set" \
                "COORDEXP_SKIP_SERVER_CHECK=1" >&2
            exit 1
        fi
    done
fi

nproc=${NPROC_PER_NODE:-1}
if [[ ! "$nproc" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch: NPROC_PER_NODE must be a positive integer, got '$nproc'" >&2
    exit 2
fi
train_args=(--config "$COORDEXP_CONFIG" "${overrides[@]}")
if ((nproc > 1)); then
    cmd=(torchrun --nproc_per_node "$nproc" -m coordexp_train "${train_args[@]}")
else
    cmd=(coordexp-train "${train_args[@]}")
fi

if ((dry_run)); then
    printf '%q ' "${cmd[@]}"
    printf '\n'
    exit 0
fi
tool "${cmd[@]}"
