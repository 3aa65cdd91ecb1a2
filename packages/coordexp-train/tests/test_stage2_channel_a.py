"""The Channel-A forward on the tiny Qwen3-VL with a real image batch."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from coordexp_parse import validate_record
from coordexp_train.data.batch import Batch, collate_samples
from coordexp_train.data.encode import SampleEncoder
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.losses import Stage1LossWeights, stage1_loss
from coordexp_train.model import LoadedModel
from coordexp_train.stage2 import channel_a_logits

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
        "objects": [{"desc": "red square", "bbox_2d": [0, 0, 40, 40]}],
    },
]


@pytest.fixture(scope="module")
def batch(loaded: LoadedModel) -> Batch:
    encoder = SampleEncoder(
        loaded.processor, prompt=PromptSpec(), max_pixels=128 * 128, max_length=4096
    )  # type: ignore[arg-type]
    samples = []
    for i, data in enumerate(RECORDS):
        record = validate_record(data, source="mem.jsonl", line=i + 1)
        image = Image.new("RGB", (record.width, record.height), (90, 120, 30 * i))
        samples.append(encoder.encode(record, image, index=i))
    pad = int(loaded.processor.tokenizer.pad_token_id)  # type: ignore[attr-defined]
    return collate_samples(samples, pad_token_id=pad)


def _coord_ids(loaded: LoadedModel) -> torch.Tensor:
    return torch.tensor(loaded.coord_vocab.ids)


def _logits(loaded: LoadedModel, batch: Batch, n: int, **kw: object) -> torch.Tensor:
    return channel_a_logits(
        loaded.model,
        batch.model_inputs(),
        batch.labels,
        _coord_ids(loaded),
        n_softctx_iter=n,
        **kw,  # type: ignore[arg-type]
    )


def _first_coord(loaded: LoadedModel, batch: Batch) -> list[int]:
    mask = torch.isin(batch.labels, _coord_ids(loaded))
    return [int(row.nonzero()[0]) for row in mask]


def test_one_iteration_is_the_plain_forward(loaded: LoadedModel, batch: Batch) -> None:
    with torch.no_grad():
        plain = loaded.model(**batch.model_inputs()).logits
        assert torch.equal(_logits(loaded, batch, 1), plain)


def test_self_context_changes_only_what_follows_the_first_coord_token(
    loaded: LoadedModel, batch: Batch
) -> None:
    with torch.no_grad():
        plain = loaded.model(**batch.model_inputs()).logits
        soft = _logits(loaded, batch, 2, temperature=0.5)
    for b, first in enumerate(_first_coord(loaded, batch)):
        # causal: positions before the first coord slot see identical inputs
        torch.testing.assert_close(soft[b, :first], plain[b, :first], rtol=1e-5, atol=1e-5)
        assert (soft[b, first:] - plain[b, first:]).abs().max() > 1e-3


def test_more_iterations_and_modes_give_different_contexts(
    loaded: LoadedModel, batch: Batch
) -> None:
    with torch.no_grad():
        two = _logits(loaded, batch, 2)
        three = _logits(loaded, batch, 3)
        straight = _logits(loaded, batch, 2, mode="straight_through")
        again = _logits(loaded, batch, 2)
    assert torch.equal(two, again)
    assert not torch.allclose(two, three)
    assert not torch.allclose(two, straight)


def test_em_detach_keeps_the_forward_but_changes_the_gradient(
    loaded: LoadedModel, batch: Batch
) -> None:
    weights = Stage1LossWeights()
    results = {}
    for grad_mode in ("unroll", "em_detach"):
        loaded.model.zero_grad(set_to_none=True)
        logits = _logits(loaded, batch, 2, grad_mode=grad_mode)
        loss = stage1_loss(logits, batch.labels, _coord_ids(loaded), weights).total
        loss.backward()
        grads = [p.grad.clone() for p in loaded.model.parameters() if p.grad is not None]
        results[grad_mode] = (loss.detach(), grads)
    (loss_u, grads_u), (loss_d, grads_d) = results["unroll"], results["em_detach"]
    torch.testing.assert_close(loss_u, loss_d)
    assert len(grads_u) == len(grads_d) > 10
    assert any(not torch.allclose(u, d) for u, d in zip(grads_u, grads_d, strict=True))
    loaded.model.zero_grad(set_to_none=True)


def test_zero_iterations_are_refused(loaded: LoadedModel, batch: Batch) -> None:
    with pytest.raises(ValueError, match=r"stage2_ab\.n_softctx_iter must be >= 1, got 0"):
        _logits(loaded, batch, 0)
