"""Does the model look at the image? Held-out loss with real images vs shuffled images.

The Stage-1 loss parts are computed twice on the same samples: once with each sample's
own image, once with the images rotated by one sample (sample i gets sample i+1's image,
text and targets unchanged). A model that reads the image does clearly worse on the
shuffled run, above all on the coordinate terms (``soft_ce``, ``w1``) and on the
description tokens inside ``token_ce``; a model that ignores it scores the same. This is
the diagnosis that found the first CPU demo learning only the average box (see
docs/demo.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from coordexp_train.data.batch import Batch, collate_samples
from coordexp_train.data.encode import EncodedSample
from coordexp_train.losses import Stage1LossWeights, stage1_loss
from coordexp_train.stage1_trainer import box_label_positions

#: Loss parts reported (those the Stage-1 objective computes under the demo weights).
RELIANCE_PARTS = ("token_ce", "soft_ce", "w1")


@dataclass(frozen=True, slots=True)
class ImageReliance:
    """Mean held-out loss parts with real and with shuffled images.

    Attributes:
        real: part name → value with each sample's own image.
        shuffled: part name → value with the images rotated by one sample.
    """

    real: dict[str, float]
    shuffled: dict[str, float]


def rotate_images(batch: Batch) -> Batch:
    """``batch`` with sample i's image replaced by sample i+1's (the last gets the first's).

    Raises:
        ValueError: fewer than two images, or images of different patch grids.
    """
    grids = batch.image_grid_thw
    if grids.shape[0] < 2 or not bool((grids == grids[0]).all()):
        raise ValueError(
            "rotating images needs at least two images of one size (same patch grid), "
            f"got grids {grids.tolist()}"
        )
    per_image = batch.pixel_values.shape[0] // grids.shape[0]
    blocks = batch.pixel_values.view(grids.shape[0], per_image, -1)
    return replace(batch, pixel_values=blocks.roll(-1, dims=0).reshape(batch.pixel_values.shape))


@torch.no_grad()
def image_reliance(
    model: nn.Module,
    samples: Sequence[EncodedSample],
    *,
    coord_token_ids: torch.Tensor,
    weights: Stage1LossWeights,
    pad_token_id: int,
) -> ImageReliance:
    """Measure :class:`ImageReliance` on ``samples`` (one forward per run, eval mode).

    The model's train/eval mode is restored afterwards. Deterministic for fixed weights.

    Raises:
        ValueError: see :func:`rotate_images`.
    """
    batch = collate_samples(samples, pad_token_id=pad_token_id)
    runs = {"real": batch, "shuffled": rotate_images(batch)}
    was_training = model.training
    model.eval()
    try:
        out: dict[str, dict[str, float]] = {}
        for name, b in runs.items():
            logits = model(**b.model_inputs()).logits
            parts = stage1_loss(
                logits, b.labels, coord_token_ids, weights, box_label_positions(b)
            ).parts
            out[name] = {k: float(parts[k]) for k in RELIANCE_PARTS if k in parts}
    finally:
        model.train(was_training)
    return ImageReliance(real=out["real"], shuffled=out["shuffled"])
