"""``coordexp-config``: check, show, JSON Schema and reference docs of CoordExp configs.

Usage:
    coordexp-config check CONFIG [--override KEY=VALUE ...]  # exit 2 listing every problem
    coordexp-config show CONFIG [--override KEY=VALUE ...] [--format yaml|json]
    coordexp-config schema                         # JSON Schema of the whole config
    coordexp-config docs                           # Markdown reference (docs/configuration.md)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from coordexp_schema.dump import to_data, to_yaml
from coordexp_schema.issues import ConfigError
from coordexp_schema.json_schema import config_json_schema
from coordexp_schema.loader import load_config
from coordexp_schema.reference import reference_markdown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coordexp-config", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("check", "validate a config"), ("show", "print the resolved config")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("config", help="YAML config file")
        cmd.add_argument(
            "--override",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="dotted override applied after the YAML, e.g. training.seed=3 (repeatable)",
        )
        if name == "show":
            cmd.add_argument("--format", choices=("yaml", "json"), default="yaml")
    sub.add_parser("schema", help="print the JSON Schema of the config")
    sub.add_parser("docs", help="print the Markdown configuration reference")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for an invalid config)."""
    args = _parser().parse_args(argv)
    if args.command == "schema":
        sys.stdout.write(json.dumps(config_json_schema(), indent=2) + "\n")
        return 0
    if args.command == "docs":
        sys.stdout.write(reference_markdown())
        return 0
    try:
        cfg = load_config(args.config, args.override)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "check":
        print(f"{args.config}: ok ({cfg.custom.trainer_variant})")
    elif args.format == "json":
        sys.stdout.write(json.dumps(to_data(cfg), indent=2) + "\n")
    else:
        sys.stdout.write(to_yaml(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
