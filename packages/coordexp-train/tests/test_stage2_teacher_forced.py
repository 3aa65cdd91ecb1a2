"""Channel-B teacher-forced samples in real batches (tiny Qwen3-VL, images, packing)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from PIL import Image

from coordexp_parse import DetObject, parse_text, render_objects, validate_record
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.data.batch import collate_rows
from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample, SampleEncoder
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.rope import append_text_positions, sample_position_ids
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.model import LoadedModel
from coordexp_train.stage2 import build_channel_b_sample, channel_b_loss
from coordexp_train.stage2.teacher_forced import (
    TeacherForcedSample,
    placements,
    teacher_forced_sample,
)

RECORDS = [
    {
        "images": ["a.png"],
        "width": 200,
        "height": 100,
        "objects": [
            {"desc": "blue circle", "bbox_2d": [100, 50, 150, 99]},
            {"desc": "green triangle", "poly": [10, 90, 30, 60, 50, 90]},
        ],
    },
    {
        "images": ["b.png"],
        "width": 120,
        "height": 160,
        "objects": [
            {"desc": "red square", "bbox_2d": [0, 0, 40, 40]},
            {"desc": "dog", "bbox_2d": [60, 80, 110, 150]},
        ],
    },
]
INVENTED = DetObject("car", "bbox_2d", (900, 900, 990, 990))
WEIGHTS = Stage1LossWeights(bbox_smoothl1_weight=1.0, bbox_ciou_weight=1.0)


def _tokenizer(loaded: LoadedModel) -> Any:
    return loaded.processor.tokenizer  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def pairs(loaded: LoadedModel) -> list[tuple[EncodedSample, TeacherForcedSample]]:
    """(dataset sample, Channel-B sample): the rollout finds the first GT and a car."""
    encoder = SampleEncoder(
        loaded.processor, prompt=PromptSpec(), max_pixels=128 * 128, max_length=4096
    )
    tokenizer = _tokenizer(loaded)
    out = []
    for i, data in enumerate(RECORDS):
        record = validate_record(data, source="mem.jsonl", line=i + 1)
        image = Image.new("RGB", (record.width, record.height), (90, 120, 30 * i))
        dataset_sample = encoder.encode(record, image, index=i)
        gts = list(parse_text(encoder.answer(record, i)[0]).objects)
        rollout = render_objects([gts[0], INVENTED])
        ids = tokenizer.encode(rollout, add_special_tokens=False)
        cb = build_channel_b_sample(ids, gts, tokenizer, RolloutMatchingConfig(), ChannelBConfig())
        assert cb.result.pairs == [(0, 0)]
        assert cb.result.fn == [1]
        forced = teacher_forced_sample(
            dataset_sample,
            cb.targets,
            loaded.coord_vocab.ids,
        )
        out.append((dataset_sample, forced))
    return out


def test_prompt_and_image_are_the_dataset_samples(
    loaded: LoadedModel, pairs: list[tuple[EncodedSample, TeacherForcedSample]]
) -> None:
    for dataset_sample, forced in pairs:
        n = forced.prompt_length
        s = forced.sample
        assert torch.equal(s.input_ids[:n], dataset_sample.input_ids[:n])
        assert torch.equal(s.position_ids[:, :n], dataset_sample.position_ids[:, :n])
        # the answer's positions continue the prompt's as a full rescan would give them
        rescanned = sample_position_ids(
            s.input_ids,
            s.image_grid_thw,
            image_token_id=_tokenizer(loaded).convert_tokens_to_ids("<|image_pad|>"),
            spatial_merge_size=2,
        )
        assert torch.equal(s.position_ids, rescanned)
        assert torch.equal(s.pixel_values, dataset_sample.pixel_values)
        assert list(s.input_ids[n:]) == list(forced.targets.token_ids)
        assert _tokenizer(loaded).decode(s.input_ids[n:]).endswith("}<|im_end|>")


def test_labels_mark_ce_tokens_and_coord_targets(
    loaded: LoadedModel, pairs: list[tuple[EncodedSample, TeacherForcedSample]]
) -> None:
    ids = loaded.coord_vocab.ids
    for _, forced in pairs:
        t, n = forced.targets, forced.prompt_length
        labels = forced.sample.labels
        assert bool((labels[:n] == IGNORE_INDEX).all())
        for i, w in enumerate(t.ce_weights):
            if w > 0:
                assert int(labels[n + i]) == t.token_ids[i]
        for p, b in zip(t.coord_positions, t.coord_bins, strict=True):
            assert int(labels[n + p]) == ids[b]
        supervised = int((labels != IGNORE_INDEX).sum())
        assert supervised == sum(w > 0 for w in t.ce_weights) + len(t.coord_positions)


def _loss(loaded: LoadedModel, rows: list[list[TeacherForcedSample]]) -> torch.Tensor:
    pad = int(_tokenizer(loaded).pad_token_id)
    batch = collate_rows([[f.sample for f in row] for row in rows], pad_token_id=pad)
    flat = [f for row in rows for f in row]
    assert torch.equal(
        batch.coord_target_bins, torch.tensor([b for f in flat for b in f.targets.coord_bins])
    )
    coord_inputs = batch.input_ids[batch.coord_batch_index, batch.coord_logit_position + 1]
    assert bool(torch.isin(coord_inputs, torch.tensor(loaded.coord_vocab.ids)).all())
    with torch.no_grad():
        logits = loaded.model(**batch.model_inputs()).logits
    return channel_b_loss(
        logits.reshape(-1, logits.shape[-1]),
        placements(batch, flat),
        torch.tensor(loaded.coord_vocab.ids),
        WEIGHTS,
    ).total


def test_packed_and_one_per_row_layouts_give_the_same_loss(
    loaded: LoadedModel, pairs: list[tuple[EncodedSample, TeacherForcedSample]]
) -> None:
    a, b = (f for _, f in pairs)
    one_per_row = _loss(loaded, [[a], [b]])
    packed = _loss(loaded, [[a, b]])
    torch.testing.assert_close(packed, one_per_row, rtol=1e-4, atol=1e-4)


def test_placements_refuse_samples_in_another_order(
    loaded: LoadedModel, pairs: list[tuple[EncodedSample, TeacherForcedSample]]
) -> None:
    a, b = (f for _, f in pairs)
    batch = collate_rows([[a.sample], [b.sample]], pad_token_id=0)
    with pytest.raises(ValueError, match="give the samples in the order they were collated"):
        placements(batch, [b, a])
    with pytest.raises(ValueError, match="the batch holds 2 samples but 1 were given"):
        placements(batch, [a])


def test_a_sample_without_an_answer_is_refused(
    loaded: LoadedModel, pairs: list[tuple[EncodedSample, TeacherForcedSample]]
) -> None:
    dataset_sample, forced = pairs[0]
    unlabelled = dataclasses.replace(
        dataset_sample, labels=torch.full_like(dataset_sample.labels, IGNORE_INDEX)
    )
    with pytest.raises(ValueError, match=r"mem\.jsonl:1: the sample has no supervised answer"):
        teacher_forced_sample(
            unlabelled,
            forced.targets,
            loaded.coord_vocab.ids,
        )


def test_appended_text_positions_refuse_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"position_ids must be \(4, L\) with L >= 1"):
        append_text_positions(torch.zeros(3, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        append_text_positions(torch.zeros(4, 2, dtype=torch.long), -1)
    grown = append_text_positions(torch.tensor([[0, 1], [0, 5], [0, 7], [0, 6]]), 2)
    assert grown[:, 2:].tolist() == [[2, 3], [8, 9], [8, 9], [8, 9]]
