"""Channel-B teacher-forced samples: the dataset sample's prompt + the injected answer.

The result is an ordinary :class:`~coordexp_train.data.encode.EncodedSample`, so Channel-B
samples are laid out (one per row, or packed) by the same ``collate_rows`` as Stage 1,
and :func:`placements` tells :func:`~coordexp_train.stage2.channel_b_loss` where each
answer sits in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from coordexp_train.data.batch import Batch
from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample
from coordexp_train.data.rope import append_text_positions
from coordexp_train.stage2.channel_b_targets import ChannelBTargets


@dataclass(frozen=True, slots=True)
class TeacherForcedSample:
    """One Channel-B training sample.

    Attributes:
        sample: prompt (with the image) + answer. ``labels`` hold the answer token at
            positions with CE weight > 0, the target bin's coord token at coord positions
            with a coordinate loss, -100 elsewhere; ``coord_*`` / ``box_slots`` are the
            targets' (positions shifted by the prompt).
        targets: the per-token supervision of the answer.
        prompt_length: tokens before the answer.
    """

    sample: EncodedSample
    targets: ChannelBTargets
    prompt_length: int


def teacher_forced_sample(
    dataset_sample: EncodedSample,
    targets: ChannelBTargets,
    coord_token_ids: Sequence[int] | torch.Tensor,
    *,
    rollout_prompt_ids: Sequence[int] | None = None,
) -> TeacherForcedSample:
    """Replace a dataset sample's ground-truth answer with a Channel-B answer.

    Args:
        dataset_sample: the encoded dataset sample (its prompt and image are kept; its
            answer starts at its first supervised label).
        targets: the Channel-B targets of the injected answer.
        coord_token_ids: token id of each coord bin (``CoordVocab.ids``, or a tensor).
        rollout_prompt_ids: the prompt the rollout was generated from
            (``Rollout.prompt_token_ids``); when given it must equal the dataset sample's
            prompt, or the answer would be trained in another context than it was
            generated in.

    Raises:
        ValueError: ``dataset_sample`` has no supervised label (no answer to replace), or
            ``rollout_prompt_ids`` differs from its prompt.
    """
    supervised = (dataset_sample.labels != IGNORE_INDEX).nonzero()
    if not supervised.numel():
        raise ValueError(f"{dataset_sample.source}: the sample has no supervised answer to replace")
    prompt_length = int(supervised[0])
    prompt = dataset_sample.input_ids[:prompt_length]
    if rollout_prompt_ids is not None and list(rollout_prompt_ids) != prompt.tolist():
        raise ValueError(
            f"{dataset_sample.source}: the rollout's prompt ({len(rollout_prompt_ids)} tokens) "
            f"is not the training prompt ({prompt_length} tokens); roll out the image at the "
            "size the dataset encoder gives it (template.max_pixels / min_pixels)"
        )
    answer = torch.tensor(targets.token_ids, dtype=torch.long)
    input_ids = torch.cat([prompt, answer])
    answer_labels = torch.where(
        torch.tensor(targets.ce_weights) > 0, answer, torch.full_like(answer, IGNORE_INDEX)
    )
    positions = torch.tensor(targets.coord_positions, dtype=torch.long)
    bins = torch.tensor(targets.coord_bins, dtype=torch.long)
    answer_labels[positions] = torch.as_tensor(coord_token_ids, dtype=torch.long)[bins]
    labels = torch.cat([torch.full((prompt_length,), IGNORE_INDEX), answer_labels])
    sample = EncodedSample(
        input_ids=input_ids,
        labels=labels,
        position_ids=append_text_positions(
            dataset_sample.position_ids[:, :prompt_length], len(targets.token_ids)
        ),
        pixel_values=dataset_sample.pixel_values,
        image_grid_thw=dataset_sample.image_grid_thw,
        coord_positions=positions + prompt_length,
        coord_bins=bins,
        coord_object=torch.tensor(targets.coord_object, dtype=torch.long),
        box_slots=torch.tensor(targets.box_index, dtype=torch.long).reshape(-1, 4),
        source=dataset_sample.source,
        index=dataset_sample.index,
        num_objects=len(set(targets.coord_object)),
    )
    return TeacherForcedSample(sample, targets, prompt_length)


def placements(
    batch: Batch, forced: Sequence[TeacherForcedSample]
) -> list[tuple[ChannelBTargets, int]]:
    """``(targets, start row)`` of each answer in the batch's flattened ``[B·L, V]`` logits.

    ``forced`` must be the samples ``batch`` was collated from, in layout order.

    Raises:
        ValueError: the batch holds a different number of samples, or another sample.
    """
    if len(batch.samples) != len(forced):
        raise ValueError(
            f"the batch holds {len(batch.samples)} samples but {len(forced)} were given"
        )
    width = batch.input_ids.shape[1]
    out: list[tuple[ChannelBTargets, int]] = []
    for span, f in zip(batch.samples, forced, strict=True):
        if span.length != f.sample.length or span.index != f.sample.index:
            raise ValueError(
                f"batch sample {span.source} (index {span.index}, {span.length} tokens) is "
                f"not {f.sample.source} (index {f.sample.index}, {f.sample.length} tokens): "
                "give the samples in the order they were collated"
            )
        out.append((f.targets, span.row * width + span.start + f.prompt_length))
    return out
