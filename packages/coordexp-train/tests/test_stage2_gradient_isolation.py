"""Gradients flow only where the Channel-B mask policy says (tiny model, real pipeline).

A batch of rollouts with matched, FP, dropped and FN-injected objects is turned into
targets and scored by ``channel_b_loss``. Perturbing the logits that predict masked tokens
(FP objects, matched ``desc``, dropped entries, the stop-neutral close and end) must leave
the loss and every parameter gradient bit-for-bit unchanged; perturbing those that predict
supervised tokens must change them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
import torch

from coordexp_match import match
from coordexp_parse import DetObject, Owner, Role, build_injection, parse_rollout, render_objects
from coordexp_schema.sections.stage2_ab import ChannelBConfig, ScheduleConfig, Stage2ABConfig
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.model import LoadedModel
from coordexp_train.stage2 import ChannelBTargets, channel_b_loss, channel_b_targets

GTS = [
    DetObject("cat", "bbox_2d", (100, 100, 300, 300)),
    DetObject("dog", "bbox_2d", (500, 500, 700, 700)),
    DetObject("tree", "poly", (10, 10, 90, 10, 50, 80)),
]
PREDS = [
    DetObject("cat", "bbox_2d", (102, 98, 305, 298)),  # matched
    DetObject("car", "bbox_2d", (900, 900, 990, 990)),  # FP
]
ROLLOUTS = [
    render_objects(PREDS)[:-1] + ', "object_3": {"desc": "dog", "bbox_2d": ["<|coord_5|>"]}',
    render_objects(PREDS[::-1])[:-1] + ', "object_3": {"desc": "tr',
]
PROMPT = "<|im_start|>assistant\n"
WEIGHTS = Stage1LossWeights(bbox_smoothl1_weight=1.0, bbox_ciou_weight=1.0)
#: every optional Stage-2 coordinate term on, so each is held to the mask policy
STAGE2 = Stage2ABConfig(
    schedule=ScheduleConfig(b_ratio=1.0),
    coord_ce_weight=0.5,
    coord_el1_weight=1.0,
    coord_ehuber_weight=1.0,
    coord_entropy_weight=0.1,
)


class Labelled(NamedTuple):
    """One answer's targets with the (owner, role) of each token and its input row."""

    targets: ChannelBTargets
    owners: tuple[Owner, ...]
    roles: tuple[Role, ...]
    start: int


class Batch(NamedTuple):
    input_ids: torch.Tensor
    samples: list[Labelled]


def _batch(loaded: LoadedModel, policy: ChannelBConfig) -> Batch:
    tokenizer: Any = loaded.processor.tokenizer  # type: ignore[attr-defined]
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False)
    rows: list[list[int]] = []
    samples: list[Labelled] = []
    for rollout in ROLLOUTS:
        parse = parse_rollout(tokenizer.encode(rollout, add_special_tokens=False), tokenizer)
        result = match(parse.objects, GTS)
        answer = build_injection(
            parse, [GTS[j] for j in result.fn], tokenizer, matched=[p for p, _ in result.pairs]
        )
        targets = channel_b_targets(parse, answer, result, GTS, policy)
        rows.append(prompt + list(answer.token_ids))
        samples.append(Labelled(targets, answer.owners, answer.roles, len(prompt)))
    width = max(map(len, rows))
    pad = int(tokenizer.pad_token_id)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    placed = [s._replace(start=b * width + s.start) for b, s in enumerate(samples)]
    return Batch(ids, placed)


def _rows(batch: Batch, keep: Callable[[Owner, Role], bool]) -> list[int]:
    """Flat logits rows that predict the answer tokens selected by ``keep``."""
    return [
        s.start + i - 1
        for s in batch.samples
        for i, (owner, role) in enumerate(zip(s.owners, s.roles, strict=True))
        if keep(owner, role)
    ]


@contextmanager
def _perturbed(loaded: LoadedModel, rows: list[int]) -> Iterator[None]:
    """Add large random noise to the output logits at the given flat rows."""
    module = loaded.model.get_output_embeddings()
    assert module is not None

    def hook(_: torch.nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
        flat = out.reshape(-1, out.shape[-1])
        noise = torch.zeros_like(flat)
        gen = torch.Generator().manual_seed(7)
        noise[rows] = 20.0 * torch.randn(len(rows), flat.shape[1], generator=gen)
        return (flat + noise).reshape(out.shape)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _loss_and_grads(
    loaded: LoadedModel, batch: Batch
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = loaded.model
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=batch.input_ids).logits
    coord_ids = torch.tensor(loaded.coord_vocab.ids)
    out = channel_b_loss(
        logits.reshape(-1, logits.shape[-1]),
        [(s.targets, s.start) for s in batch.samples],
        coord_ids,
        WEIGHTS,
        STAGE2,
    )
    out.total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.total.detach(), grads


def _masked(owner: Owner, role: Role) -> bool:
    return owner in (Owner.FP, Owner.NONE) or (owner is Owner.MATCHED and role is Role.DESC)


def test_batch_holds_every_kind_of_token(loaded: LoadedModel) -> None:
    batch = _batch(loaded, ChannelBConfig())
    owners = {o for s in batch.samples for o in s.owners}
    assert owners == {Owner.MATCHED, Owner.FP, Owner.FN, Owner.NONE}
    assert len(_rows(batch, lambda o, r: o is Owner.FP)) > 40
    assert _rows(batch, lambda o, r: o is Owner.MATCHED and r is Role.DESC)


def test_fp_masked_desc_and_stop_neutral_tokens_contribute_no_gradient(
    loaded: LoadedModel,
) -> None:
    batch = _batch(loaded, ChannelBConfig())
    loss, grads = _loss_and_grads(loaded, batch)
    with _perturbed(loaded, _rows(batch, _masked)):
        loss_p, grads_p = _loss_and_grads(loaded, batch)
    assert torch.equal(loss, loss_p)
    assert grads.keys() == grads_p.keys()
    assert len(grads) > 10
    assert all(torch.equal(grads[n], grads_p[n]) for n in grads)


SUPERVISED: dict[str, Callable[[Owner, Role], bool]] = {
    "matched structure": lambda o, r: o is Owner.MATCHED and r is Role.STRUCTURE,
    "matched coord": lambda o, r: o is Owner.MATCHED and r is Role.COORD,
    "fn structure": lambda o, r: o is Owner.FN and r is Role.STRUCTURE,
    "fn desc": lambda o, r: o is Owner.FN and r is Role.DESC,
    "fn coord": lambda o, r: o is Owner.FN and r is Role.COORD,
}


@pytest.mark.parametrize("kind", list(SUPERVISED))
def test_supervised_tokens_change_the_loss_and_gradients(loaded: LoadedModel, kind: str) -> None:
    batch = _batch(loaded, ChannelBConfig())
    rows = _rows(batch, SUPERVISED[kind])
    assert rows
    loss, grads = _loss_and_grads(loaded, batch)
    with _perturbed(loaded, rows):
        loss_p, grads_p = _loss_and_grads(loaded, batch)
    assert not torch.equal(loss, loss_p)
    assert any(not torch.equal(grads[n], grads_p[n]) for n in grads)


def test_close_and_end_carry_gradient_when_not_stop_neutral(loaded: LoadedModel) -> None:
    def stop(_: Owner, role: Role) -> bool:
        return role in (Role.CLOSE, Role.END)

    for stop_neutral, changes in ((True, False), (False, True)):
        batch = _batch(loaded, ChannelBConfig(stop_neutral=stop_neutral))
        loss, _ = _loss_and_grads(loaded, batch)
        with _perturbed(loaded, _rows(batch, stop)):
            loss_p, _ = _loss_and_grads(loaded, batch)
        assert torch.equal(loss, loss_p) is not changes


def test_every_stage2_coordinate_term_is_computed(loaded: LoadedModel) -> None:
    batch = _batch(loaded, ChannelBConfig())
    logits = loaded.model(input_ids=batch.input_ids).logits.detach()
    out = channel_b_loss(
        logits.reshape(-1, logits.shape[-1]),
        [(s.targets, s.start) for s in batch.samples],
        torch.tensor(loaded.coord_vocab.ids),
        WEIGHTS,
        STAGE2,
    )
    names = {"token_ce", "coord_ce", "coord_el1", "coord_ehuber", "coord_entropy"}
    assert names | {"soft_ce", "w1", "gate", "bbox_smoothl1", "bbox_ciou"} <= out.parts.keys()
    assert all(float(out.parts[n]) > 0 for n in names)
