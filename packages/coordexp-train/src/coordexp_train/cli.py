"""The ``coordexp-train`` command.

    coordexp-train --config CONFIG.yaml [--override dotted.key=value ...]
    coordexp-train expand-vocab --src DIR --dst DIR [--coord-token-mode added|special]

Also runnable as ``python -m coordexp_train`` (what ``torchrun`` and ``accelerate launch``
start on every process). Exit codes: 0 success, 2 invalid config or arguments, 1 a runtime
problem the message explains (missing files, a model without coord tokens, bad data).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from coordexp_schema import ConfigError, load_config

EXPAND_VOCAB = "expand-vocab"


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordexp-train",
        description=(
            "Train a CoordExp model from one YAML config. "
            f"Run `coordexp-train {EXPAND_VOCAB} --help` to add coord tokens to a checkpoint."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML config file")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override applied after the YAML, e.g. training.max_steps=5 (repeatable)",
    )
    return parser


def _expand_vocab_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"coordexp-train {EXPAND_VOCAB}",
        description="Copy a Qwen-VL checkpoint, adding the 1000 <|coord_k|> tokens.",
    )
    parser.add_argument("--src", required=True, type=Path, help="the original checkpoint folder")
    parser.add_argument("--dst", required=True, type=Path, help="a new (empty) folder")
    parser.add_argument(
        "--coord-token-mode",
        choices=["added", "special"],
        default="added",
        help="register the coord tokens as added (default) or special tokens",
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"coordexp-train: error: {message}", file=sys.stderr)
    return code


def expand_vocab_main(argv: Sequence[str]) -> int:
    """Run ``expand-vocab``; return the exit code."""
    from coordexp_train.model import CoordVocabError, ExpandVocabError, expand_vocab

    args = _expand_vocab_parser().parse_args(argv)
    try:
        vocab = expand_vocab(args.src, args.dst, coord_token_mode=args.coord_token_mode)
    except (ExpandVocabError, CoordVocabError, FileNotFoundError) as exc:
        return _fail(str(exc), 1)
    print(
        f"Wrote {args.dst} with coord tokens <|coord_0|>..<|coord_999|> at ids "
        f"{vocab.ids[0]}..{vocab.ids[-1]}; set model.model: {args.dst}"
    )
    return 0


def train_main(argv: Sequence[str]) -> int:
    """Load the config (strictly, before anything is built), then train; return the code."""
    args = _train_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.override)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except FileNotFoundError as exc:
        return _fail(f"--config: {exc}", 2)

    from coordexp_train.run import RUNTIME_ERRORS, train

    try:
        summary = train(cfg)
    except RUNTIME_ERRORS as exc:
        return _fail(str(exc), 1)
    if summary is not None:
        print(summary.render())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coordexp-train`` and ``python -m coordexp_train``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == EXPAND_VOCAB:
        return expand_vocab_main(args[1:])
    return train_main(args)
