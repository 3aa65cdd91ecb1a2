"""The ``coordexp-eval`` command: score a saved predictions file against a dataset.

``coordexp-eval --gt VAL.jsonl --predictions PRED.jsonl --out DIR`` writes
``DIR/metrics.json`` (see ``evaluation_report``) and, unless ``--overlays 0``, overlay PNGs
and their grid under ``DIR/overlays/``. Exit codes: 0 done, 2 bad input (the message
names the file and line, or the option).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from coordexp_parse import RecordError
from coordexp_train.evaluation.ground_truth import load_ground_truth
from coordexp_train.evaluation.overlays import write_overlays
from coordexp_train.evaluation.predictions import PredictionsError, read_predictions
from coordexp_train.evaluation.report import evaluation_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordexp-eval",
        description="Score a predictions JSONL file against a dataset JSONL file.",
    )
    parser.add_argument("--gt", required=True, type=Path, help="dataset records (JSONL)")
    parser.add_argument(
        "--predictions", required=True, type=Path, help="predictions, one line per image"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--overlays", type=int, default=16, help="images to draw (0: none; default 16)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the overlay sample")
    parser.add_argument("--scale", type=int, default=2, help="overlay upscale factor")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``coordexp-eval``; return the exit code (0 done, 2 bad input)."""
    args = _parser().parse_args(argv)
    if args.overlays < 0 or args.scale < 1:
        print("coordexp-eval: error: --overlays must be >= 0 and --scale >= 1", file=sys.stderr)
        return 2
    try:
        gt = load_ground_truth(args.gt)
        predictions = read_predictions(args.predictions)
        report = evaluation_report(gt, predictions)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.overlays:
            write_overlays(
                gt,
                predictions,
                args.out / "overlays",
                sample=args.overlays,
                seed=args.seed,
                scale=args.scale,
            )
    except (RecordError, PredictionsError, ValueError, OSError) as exc:
        print(f"coordexp-eval: error: {exc}", file=sys.stderr)
        return 2
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    c, s = report["coco"], report["set"]
    print(
        f"mAP {c['mAP']:.4f}  mAP@50 {c['mAP50']:.4f}  mAP@75 {c['mAP75']:.4f}  "
        f"AR@100 {c['AR100']:.4f}  P {s['precision']:.4f}  R {s['recall']:.4f}  "
        f"F1 {s['f1']:.4f}  unmatched desc {c['unmatched_predictions']}  out: {args.out}"
    )
    return 0
