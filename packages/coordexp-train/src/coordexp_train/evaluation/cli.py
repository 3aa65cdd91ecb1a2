"""The ``coordexp-eval`` command: score predictions against a dataset, from a file or a model.

``coordexp-eval --gt VAL.jsonl --predictions PRED.jsonl --out DIR`` scores a saved
predictions file; ``coordexp-eval --gt VAL.jsonl --model REF --out DIR`` first answers
every image with the model (``builtin:<name>`` or a checkpoint folder) and writes
``DIR/predictions.jsonl``. ``--gt`` also takes ``builtin:<name>/<split>`` (a built-in
synthetic dataset, written on first use). With ``--config TRAIN.yaml`` the prompt, image
sizing, model loading and rollout settings (backend: HF, or vLLM as ``rollout_matching``
says; decoding; batch size) come from that training config, and the model is its
``model.model`` unless ``--model-override`` names another; without ``--config`` they come
from the options. Both write ``DIR/metrics.json`` (see ``evaluation_report``) and, unless
``--overlays 0``, overlay PNGs and their grid under ``DIR/overlays/``. Relative image paths
resolve against ``--image-root`` (default: the ground-truth file's folder). Exit codes: 0
done, 2 bad input (the message names the file and line, the config key, or the option).

``coordexp-plot-curves --metrics RUN/metrics.jsonl --out curves.png --keys loss ...``
plots values of a metrics JSONL file over steps (see ``curves.plot_curves``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from coordexp_parse import RecordError
from coordexp_schema import ConfigError, RolloutMatchingConfig, load_config
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import SampleError
from coordexp_train.data.synthetic import resolve_records_path
from coordexp_train.evaluation.curves import plot_curves, read_metrics_file
from coordexp_train.evaluation.ground_truth import load_ground_truth
from coordexp_train.evaluation.model_answers import (
    InferenceSettings,
    inference_settings,
    model_predictions,
    with_decoding,
)
from coordexp_train.evaluation.overlays import write_overlays
from coordexp_train.evaluation.predictions import (
    PredictionsError,
    read_predictions,
    write_predictions,
)
from coordexp_train.evaluation.report import evaluation_report

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordexp-eval",
        description="Score detection predictions (a saved file, or a model's answers) "
        "against a dataset JSONL file.",
    )
    parser.add_argument(
        "--gt", required=True, help="dataset records (JSONL), or builtin:<name>/<split>"
    )
    parser.add_argument(
        "--image-root", type=Path, default=None, help="folder relative image paths resolve against"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="predictions, one line per image")
    source.add_argument("--model", help="builtin:<name> or a checkpoint folder to run")
    source.add_argument(
        "--config",
        type=Path,
        help="training YAML: run its model (or --model-override) with its template and rollouts",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--overlays", type=int, default=16, help="images to draw (0: none; default 16)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the overlay sample")
    parser.add_argument("--scale", type=int, default=2, help="overlay upscale factor")
    model = parser.add_argument_group("model runs (--model or --config)")
    model.add_argument(
        "--model-override", default=None, help="with --config: run this model instead"
    )
    model.add_argument(
        "--max-new-tokens", type=int, default=None, help="answer length cap (default 512)"
    )
    model.add_argument(
        "--decode-batch-size", type=int, default=None, help="images per generate (default 8)"
    )
    flags = parser.add_argument_group("model runs without --config (as trained)")
    flags.add_argument("--max-pixels", type=int, default=1_048_576, help="template.max_pixels")
    flags.add_argument("--min-pixels", type=int, default=None, help="template.min_pixels")
    flags.add_argument(
        "--dtype", default="float32", choices=("auto", "float32", "bfloat16", "float16")
    )
    flags.add_argument(
        "--prompt-variant", default="default", choices=("default", "short"), help="as trained"
    )
    flags.add_argument(
        "--field-order",
        default="desc_first",
        choices=("desc_first", "geometry_first"),
        help="as trained",
    )
    flags.add_argument("--coord-token-mode", default="added", choices=("added", "special"))
    return parser


def _settings(args: argparse.Namespace) -> InferenceSettings:
    """Inference settings from ``--config`` (plus overrides) or from the options.

    Raises:
        ConfigError: the config file is invalid (every problem, with its key path).
    """
    if args.config is not None:
        base = inference_settings(load_config(args.config), model=args.model_override)
    else:
        base = InferenceSettings(
            model=args.model,
            dtype=args.dtype,
            attn_implementation="sdpa",
            coord_token_mode=args.coord_token_mode,
            prompt=PromptSpec(variant=args.prompt_variant, field_order=args.field_order),
            max_pixels=args.max_pixels,
            min_pixels=args.min_pixels,
            rollout=RolloutMatchingConfig(decode_batch_size=8),
        )
    return with_decoding(
        base, max_new_tokens=args.max_new_tokens, decode_batch_size=args.decode_batch_size
    )


def _option_problem(args: argparse.Namespace) -> str | None:
    if args.overlays < 0:
        return f"--overlays must be >= 0, got {args.overlays}"
    if args.scale < 1:
        return f"--scale must be >= 1, got {args.scale}"
    for name in ("max_new_tokens", "decode_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {value}"
    if args.model_override is not None and args.config is None:
        return "--model-override needs --config (use --model otherwise)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``coordexp-eval``; return the exit code (0 done, 2 bad input)."""
    args = _parser().parse_args(argv)
    problem = _option_problem(args)
    if problem is not None:
        print(f"coordexp-eval: error: {problem}", file=sys.stderr)
        return 2
    try:
        gt = load_ground_truth(resolve_records_path(args.gt), image_root=args.image_root)
        if args.predictions is not None:
            predictions = read_predictions(args.predictions)
        else:
            predictions = model_predictions(_settings(args), gt, progress=True)
            args.out.mkdir(parents=True, exist_ok=True)
            write_predictions(args.out / PREDICTIONS_FILE, predictions)
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
    except (RecordError, SampleError, PredictionsError, ConfigError, ValueError, OSError) as exc:
        print(f"coordexp-eval: error: {exc}", file=sys.stderr)
        return 2
    (args.out / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n")
    c, s = report["coco"], report["set"]
    print(
        f"mAP {c['mAP']:.4f}  mAP@50 {c['mAP50']:.4f}  mAP@75 {c['mAP75']:.4f}  "
        f"AR@100 {c['AR100']:.4f}  P {s['precision']:.4f}  R {s['recall']:.4f}  "
        f"F1 {s['f1']:.4f}  unmatched desc {c['unmatched_predictions']}  out: {args.out}"
    )
    return 0


def curves_main(argv: Sequence[str] | None = None) -> int:
    """Run ``coordexp-plot-curves``; return the exit code (0 done, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog="coordexp-plot-curves",
        description="Plot values of a metrics JSONL file (e.g. a run's metrics.jsonl) over steps.",
    )
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSONL file")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument(
        "--keys", nargs="+", default=["loss"], help="values to plot, one panel each"
    )
    args = parser.parse_args(argv)
    try:
        image = plot_curves(read_metrics_file(args.metrics), args.keys)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.out, format="PNG")
    except (ValueError, OSError) as exc:
        print(f"coordexp-plot-curves: error: {exc}", file=sys.stderr)
        return 2
    print(f"{', '.join(args.keys)} over steps: {args.out}")
    return 0
