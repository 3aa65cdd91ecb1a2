"""The training batch: samples laid out in rows (one per row, or several packed).

Every row holds one or more samples back to back, then padding. Attention never
crosses samples: row 0 of ``position_ids`` restarts at 0 at every sample (and at the
padding tail), and with no ``attention_mask`` transformers turns those restarts into a
block-diagonal causal mask (sdpa/eager) or variable-length attention (flash). Each
sample keeps the mRoPE positions computed for it alone. An unpacked batch is the
special case of one sample per row, so training code has a single path.

Coordinate convention (read this before writing a loss): for coord target i,
``logits[coord_batch_index[i], coord_logit_position[i]]`` is the distribution whose
target bin is ``coord_target_bins[i]`` — the logit position is the coord token's own
position minus one (position t predicts token t + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample


@dataclass(frozen=True, slots=True)
class SampleSpan:
    """Where one sample sits in a batch.

    Attributes:
        row: batch row.
        start: first token position in the row.
        length: tokens.
        source: the record, ``"file:line"``.
        index: the sample's dataset index.
        num_objects: objects in its answer.
    """

    row: int
    start: int
    length: int
    source: str
    index: int
    num_objects: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Model inputs and loss targets of one forward pass.

    Attributes:
        input_ids: ``(B, L)`` token ids; padding is ``pad_token_id``.
        labels: ``(B, L)`` aligned with ``input_ids``; -100 = no loss (prompt, padding).
        position_ids: ``(4, B, L)`` text positions (restarting per sample) and mRoPE rows.
        padding_mask: ``(B, L)`` True on real tokens, False on padding.
        pixel_values: ``(P, D)`` patches of every image, in row-major sample order.
        image_grid_thw: ``(num_images, 3)`` patch grids, same order.
        coord_batch_index: ``(N,)`` batch row of each coord target.
        coord_logit_position: ``(N,)`` position of the logits that predict it.
        coord_target_bins: ``(N,)`` target bins in 0..999.
        coord_sample_index: ``(N,)`` index into ``samples`` of its sample.
        coord_object_index: ``(N,)`` its object, numbered across the batch (0-based).
        box_coord_index: ``(M, 4)`` indices into the N coord targets of each bbox_2d's
            x1, y1, x2, y2 (for box losses); polygons have none.
        samples: one :class:`SampleSpan` per sample, rows in order.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    padding_mask: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    coord_batch_index: torch.Tensor
    coord_logit_position: torch.Tensor
    coord_target_bins: torch.Tensor
    coord_sample_index: torch.Tensor
    coord_object_index: torch.Tensor
    box_coord_index: torch.Tensor
    samples: tuple[SampleSpan, ...]

    def model_inputs(self) -> dict[str, torch.Tensor | bool]:
        """Keyword arguments for the model's forward: ``model(**batch.model_inputs())``.

        No labels (losses are computed outside the model) and no attention mask: the
        per-sample restarts of ``position_ids[0]`` are the mask. ``use_cache`` is False
        because transformers only derives the block-diagonal mask from position ids when
        no KV cache is in play — with a cache, packed samples would attend to each other.
        """
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "pixel_values": self.pixel_values,
            "image_grid_thw": self.image_grid_thw,
            "use_cache": False,
        }

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def collate_rows(rows: Sequence[Sequence[EncodedSample]], *, pad_token_id: int) -> Batch:
    """Lay out samples in rows: each inner sequence becomes one row, padded on the right.

    Args:
        rows: the samples of each row, in layout order (one per row when not packing).
        pad_token_id: the tokenizer's pad id.

    Raises:
        ValueError: an empty row or no rows.
    """
    if not rows or any(not row for row in rows):
        raise ValueError("every batch row needs at least one sample")
    width = max(sum(s.length for s in row) for row in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_token_id, dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((4, b, width), dtype=torch.long)
    padding_mask = torch.zeros((b, width), dtype=torch.bool)
    spans: list[SampleSpan] = []
    pixels, grids = [], []
    c_row, c_pos, c_bin, c_sample, c_obj, boxes = [], [], [], [], [], []
    n_coords = n_objects = 0
    for r, row in enumerate(rows):
        start = 0
        for sample in row:
            end = start + sample.length
            input_ids[r, start:end] = sample.input_ids
            labels[r, start:end] = sample.labels
            position_ids[:, r, start:end] = sample.position_ids
            padding_mask[r, start:end] = True
            pixels.append(sample.pixel_values)
            grids.append(sample.image_grid_thw)
            n = sample.coord_positions.shape[0]
            c_row.append(torch.full((n,), r, dtype=torch.long))
            c_pos.append(sample.coord_positions + start - 1)
            c_bin.append(sample.coord_bins)
            c_sample.append(torch.full((n,), len(spans), dtype=torch.long))
            c_obj.append(sample.coord_object + n_objects)
            boxes.append(sample.box_slots + n_coords)
            spans.append(
                SampleSpan(r, start, sample.length, sample.source, sample.index, sample.num_objects)
            )
            n_coords += n
            n_objects += sample.num_objects
            start = end
        tail = torch.arange(width - start)
        position_ids[:, r, start:] = tail
    return Batch(
        input_ids=input_ids,
        labels=labels,
        position_ids=position_ids,
        padding_mask=padding_mask,
        pixel_values=torch.cat(pixels),
        image_grid_thw=torch.cat(grids),
        coord_batch_index=torch.cat(c_row),
        coord_logit_position=torch.cat(c_pos),
        coord_target_bins=torch.cat(c_bin),
        coord_sample_index=torch.cat(c_sample),
        coord_object_index=torch.cat(c_obj),
        box_coord_index=torch.cat(boxes),
        samples=tuple(spans),
    )


def collate_samples(samples: Sequence[EncodedSample], *, pad_token_id: int) -> Batch:
    """One sample per row (no packing)."""
    return collate_rows([[s] for s in samples], pad_token_id=pad_token_id)
