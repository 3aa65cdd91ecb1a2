"""``coordexp-preflight``: resolve a config into shell assignments, or check a contract.

Usage:
    coordexp-preflight --config CONFIG [--override KEY=VALUE ...]  # assignments to eval
    coordexp-preflight --check [VALUE|-]  # validate a ROLLOUT_CONTRACT_JSON value

Exit status: 0 ok, 1 invalid contract, 2 invalid config or usage. Nothing is printed on
stdout when the config is invalid, so ``eval`` of the output never runs a half result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from coordexp_schema.contract import ContractError, preflight_lines, validate_contract
from coordexp_schema.issues import ConfigError
from coordexp_schema.loader import load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the preflight command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="coordexp-preflight",
        description="Resolve a CoordExp config into shell assignments for a launcher.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="YAML config to resolve")
    group.add_argument(
        "--check",
        nargs="?",
        const="-",
        metavar="VALUE",
        help="validate a ROLLOUT_CONTRACT_JSON value (from stdin when '-' or omitted)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override applied after the YAML, e.g. training.seed=3 (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        if args.override:
            parser.error("--check takes no overrides")
        value = sys.stdin.read() if args.check == "-" else args.check
        try:
            validate_contract(value)
        except ContractError as exc:
            print(f"coordexp-preflight: invalid rollout contract: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        cfg = load_config(args.config, args.override)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(preflight_lines(cfg, args.config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
