"""One Channel-B update composed from the components, with real HF rollouts of the tiny model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from PIL import Image

from coordexp_backends import RolloutRequest, create_backend, decode_params
from coordexp_parse import parse_text, validate_record
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.data.batch import collate_rows
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.encode import SampleEncoder
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.model import LoadedModel
from coordexp_train.model.processor import set_image_size
from coordexp_train.stage2 import (
    build_channel_b_sample,
    channel_b_loss,
    placements,
    step_stats,
    teacher_forced_sample,
)

RECORDS = [
    {
        "images": [f"{i}.png"],
        "width": 64,
        "height": 64,
        "objects": [
            {"desc": "blue circle", "bbox_2d": [10 * i, 5, 30 + 10 * i, 40]},
            {"desc": "red square", "bbox_2d": [40, 40, 63, 63]},
        ],
    }
    for i in range(2)
]
ROLLOUT_CFG = RolloutMatchingConfig(max_new_tokens=48, decode_batch_size=2)


def test_a_channel_b_update_from_real_rollouts(loaded: LoadedModel) -> None:
    prompt = PromptSpec()
    encoder = SampleEncoder(loaded.processor, prompt=prompt, max_pixels=128 * 128, max_length=4096)
    tokenizer: Any = loaded.processor.tokenizer  # type: ignore[attr-defined]
    records = [validate_record(d, source="mem.jsonl", line=i + 1) for i, d in enumerate(RECORDS)]
    images = [Image.new("RGB", (64, 64), (20 + 100 * i, 90, 40)) for i in range(2)]
    backend = create_backend(ROLLOUT_CFG, processor=loaded.processor, model=loaded.model)
    requests = [RolloutRequest(f"s{i}", prompt_messages(prompt), [images[i]]) for i in range(2)]
    rollouts = backend.generate(requests, decode_params(ROLLOUT_CFG, seed=0))

    forced, samples = [], []
    for i, (record, rollout) in enumerate(zip(records, rollouts, strict=True)):
        dataset_sample = encoder.encode(record, images[i], index=i)
        gts = list(parse_text(encoder.answer(record, i)[0]).objects)
        sample = build_channel_b_sample(
            rollout.response_token_ids, gts, tokenizer, ROLLOUT_CFG, ChannelBConfig()
        )
        tf = teacher_forced_sample(
            dataset_sample,
            sample.targets,
            loaded.coord_vocab.ids,
            rollout_prompt_ids=rollout.prompt_token_ids,  # checked: the same context
        )
        forced.append(tf)
        samples.append(sample)
    stats = step_stats(samples)
    assert stats["rollouts"] == 2.0
    assert stats["rollout_len_max"] <= ROLLOUT_CFG.max_new_tokens
    assert stats["matched"] + stats["fn"] == 4.0  # every GT is matched or injected

    model = loaded.model
    model.train()
    batch = collate_rows([[f.sample for f in forced]], pad_token_id=int(tokenizer.pad_token_id))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    logits = model(**batch.model_inputs()).logits
    loss = channel_b_loss(
        logits.reshape(-1, logits.shape[-1]),
        placements(batch, forced),
        torch.tensor(loaded.coord_vocab.ids),
        Stage1LossWeights(bbox_smoothl1_weight=1.0, bbox_ciou_weight=1.0),
    )
    assert torch.isfinite(loss.total)
    assert {"token_ce", "soft_ce", "bbox_ciou"} <= loss.parts.keys()
    loss.total.backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > 10
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    model.eval()


def test_a_rollout_of_a_differently_sized_image_is_refused(loaded: LoadedModel) -> None:
    prompt = PromptSpec()
    encoder = SampleEncoder(loaded.processor, prompt=prompt, max_pixels=128 * 128, max_length=4096)
    data = {**RECORDS[0], "width": 400, "height": 200}
    record = validate_record(data, source="big.jsonl", line=3)
    image = Image.new("RGB", (400, 200), (20, 90, 40))
    dataset_sample = encoder.encode(record, image, index=0)
    backend = create_backend(ROLLOUT_CFG, processor=loaded.processor, model=loaded.model)
    # the backend's processor sizes the image by its own defaults, not template.max_pixels
    [rollout] = backend.generate(
        [RolloutRequest("big", prompt_messages(prompt), [image])],
        decode_params(dataclasses.replace(ROLLOUT_CFG, max_new_tokens=2), seed=0),
    )
    tokenizer: Any = loaded.processor.tokenizer  # type: ignore[attr-defined]
    gts = list(parse_text(encoder.answer(record, 0)[0]).objects)
    sample = build_channel_b_sample(
        rollout.response_token_ids, gts, tokenizer, ROLLOUT_CFG, ChannelBConfig()
    )
    with pytest.raises(
        ValueError, match=r"big\.jsonl:3: the rollout's prompt \(\d+ tokens\) is not"
    ):
        teacher_forced_sample(
            dataset_sample,
            sample.targets,
            loaded.coord_vocab.ids,
            rollout_prompt_ids=rollout.prompt_token_ids,
        )


def test_with_the_template_image_size_the_rollout_prompt_is_the_training_prompt(
    loaded: LoadedModel,
) -> None:
    prompt = PromptSpec()
    max_pixels = 128 * 128
    encoder = SampleEncoder(loaded.processor, prompt=prompt, max_pixels=max_pixels, max_length=4096)
    record = validate_record(
        {**RECORDS[0], "width": 400, "height": 200}, source="big.jsonl", line=3
    )
    image = Image.new("RGB", (400, 200), (20, 90, 40))
    dataset_sample = encoder.encode(record, image, index=0)
    size = dict(loaded.processor.image_processor.size)  # type: ignore[attr-defined]
    set_image_size(loaded.processor, max_pixels)  # what the trainer does at load
    try:
        backend = create_backend(ROLLOUT_CFG, processor=loaded.processor, model=loaded.model)
        [rollout] = backend.generate(
            [RolloutRequest("big", prompt_messages(prompt), [image])],
            decode_params(dataclasses.replace(ROLLOUT_CFG, max_new_tokens=2), seed=0),
        )
    finally:
        loaded.processor.image_processor.size = size  # type: ignore[attr-defined]
    prompt_length = int((dataset_sample.labels != -100).nonzero()[0])
    assert list(rollout.prompt_token_ids) == dataset_sample.input_ids[:prompt_length].tolist()
