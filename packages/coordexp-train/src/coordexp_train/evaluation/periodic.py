"""Detection metrics during training: greedy answers on the validation split, scored.

The Stage-1 trainer calls a :class:`DetectionEval` at every evaluation
(``training.eval_steps``): each validation image is answered greedily by the training
model through the HF rollout backend (the training prompt and image sizing), parsed and
scored with :func:`~coordexp_train.evaluation.report.evaluation_report`. The figures are
logged as ``eval_mAP``, ``eval_mAP50``, ``eval_mAP75``, ``eval_precision``, ``eval_recall``,
``eval_f1`` and ``eval_valid_object_rate`` (see :data:`LOGGED_FIGURES`), so they land in
``metrics.jsonl`` beside the loss and ``coordexp-plot-curves`` can draw them.

:func:`detection_eval_for` builds one from the run's validation dataset (``data.val_jsonl``,
bounded by ``data.val_sample_limit``: keep it small, every image is decoded): its checked
records and image paths, its encoder's prompt and image sizing, and an answer cap equal to
the token length of its longest sample (prompt + answer), which no correct answer exceeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordexp_backends import DecodeParams, HFBackend
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.evaluation.ground_truth import GroundTruthImage, ground_truth_of
from coordexp_train.evaluation.report import evaluation_report
from coordexp_train.evaluation.rollouts import rollout_predictions
from coordexp_train.model.processor import set_image_size

#: Logged name → (report section, key).
LOGGED_FIGURES: dict[str, tuple[str, str]] = {
    "eval_mAP": ("coco", "mAP"),
    "eval_mAP50": ("coco", "mAP50"),
    "eval_mAP75": ("coco", "mAP75"),
    "eval_precision": ("set", "precision"),
    "eval_recall": ("set", "recall"),
    "eval_f1": ("set", "f1"),
    "eval_valid_object_rate": ("parse_health", "valid_object_rate"),
}


def logged_figures(report: dict[str, Any]) -> dict[str, float]:
    """The :data:`LOGGED_FIGURES` of an evaluation report (a None figure is left out)."""
    out: dict[str, float] = {}
    for name, (section, key) in LOGGED_FIGURES.items():
        value = report[section][key]
        if value is not None:
            out[name] = float(value)
    return out


@dataclass(frozen=True, slots=True)
class DetectionEval:
    """Greedy answers on fixed ground-truth images, scored (see the module docstring).

    Attributes:
        ground_truth: the images to answer, in order.
        processor: the model's processor, its image sizing set to the training one
            (``coordexp_train.model.set_image_size``).
        prompt: the training prompt.
        max_new_tokens: answer length cap.
        decode_batch_size: images per ``generate`` call.
    """

    ground_truth: Sequence[GroundTruthImage]
    processor: Any
    prompt: PromptSpec
    max_new_tokens: int
    decode_batch_size: int = 16

    def __call__(self, model: Any) -> dict[str, float]:
        """Answer every image with ``model`` and return :func:`logged_figures`.

        The model's train/eval mode is restored afterwards. Deterministic for fixed
        weights (greedy decoding).

        Raises:
            ValueError: the ground truth holds no object (COCO AP is undefined).
        """
        backend = HFBackend(model, self.processor, self.decode_batch_size)
        predictions = rollout_predictions(
            backend,
            self.ground_truth,
            DecodeParams(max_new_tokens=self.max_new_tokens),
            prompt=self.prompt,
            chunk_size=self.decode_batch_size,
        )
        return logged_figures(evaluation_report(self.ground_truth, predictions))


def detection_eval_for(val: DetectionDataset, decode_batch_size: int = 16) -> DetectionEval:
    """The :class:`DetectionEval` of a validation dataset (see the module docstring).

    Sets the encoder's processor to the training image sizing
    (:func:`~coordexp_train.model.processor.set_image_size`); the encoder passes its sizes
    explicitly, so training is unaffected.

    Raises:
        ValueError: ``val`` is empty.
    """
    if not len(val):
        raise ValueError("detection evaluation needs at least one validation sample")
    encoder = val.encoder
    set_image_size(encoder.processor, encoder.max_pixels, encoder.min_pixels)
    return DetectionEval(
        ground_truth=ground_truth_of(val.refs),
        processor=encoder.processor,
        prompt=encoder.prompt,
        max_new_tokens=max(val.lengths),
        decode_batch_size=decode_batch_size,
    )
