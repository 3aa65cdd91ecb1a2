"""The Channel-B loss terms against direct float64 formulas."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from coordexp_train.losses import Stage1LossWeights
from coordexp_train.stage2 import ChannelBTargets, channel_b_loss

V = 1020
COORD_IDS = torch.arange(10, 1010)
#: only the Stage-2 terms (the shared coord terms are tested with the Stage-1 loss)
SHARED_OFF = Stage1LossWeights(soft_ce_weight=0.0, w1_weight=0.0, gate_weight=0.0)


@dataclass(frozen=True)
class Stage2Weights:
    coord_ce_weight: float = 0.0
    coord_el1_weight: float = 0.0
    coord_ehuber_weight: float = 0.0
    coord_ehuber_delta: float = 0.05
    coord_entropy_weight: float = 0.0


#: answer: 3 text tokens (weights 1, 0, 0.5) and 2 coord tokens (bins 100 and 900)
TARGETS = ChannelBTargets(
    token_ids=(3, 4, 5, 10 + 7, 10 + 800),
    ce_weights=(1.0, 0.0, 0.5, 0.0, 0.0),
    coord_positions=(3, 4),
    coord_bins=(100, 900),
    coord_object=(0, 0),
    box_index=(),
    unsupervised_coord_objects=0,
)
START = 2  # the answer's first token sits at row 2; rows 1..5 predict it


def _logits() -> torch.Tensor:
    return 2.0 * torch.randn(8, V, generator=torch.Generator().manual_seed(0))


def test_token_ce_is_the_weighted_mean_over_weighted_tokens() -> None:
    z = _logits()
    out = channel_b_loss(z, [(TARGETS, START)], COORD_IDS, SHARED_OFF)
    ce = F.cross_entropy(z.double()[[1, 3]], torch.tensor([3, 5]), reduction="none")
    torch.testing.assert_close(out.total.double(), (ce[0] + 0.5 * ce[1]) / 2)
    assert set(out.parts) == {"token_ce", "coord_mass"}


def _stage2_part(name: str, **weights: float) -> torch.Tensor:
    out = channel_b_loss(
        _logits(), [(TARGETS, START)], COORD_IDS, SHARED_OFF, Stage2Weights(**weights)
    )
    return out.parts[name].double()


def _coord_probs() -> torch.Tensor:
    return torch.softmax(_logits().double()[[4, 5]][:, COORD_IDS], dim=1)


GT = torch.tensor([100.0, 900.0], dtype=torch.float64) / 999


def test_coord_ce_is_the_cross_entropy_of_the_target_bins_token() -> None:
    ce = F.cross_entropy(_logits().double()[[4, 5]], COORD_IDS[[100, 900]])
    torch.testing.assert_close(_stage2_part("coord_ce", coord_ce_weight=1.0), ce)


def test_expected_l1_and_huber_use_the_expectation_decode() -> None:
    grid = torch.arange(1000, dtype=torch.float64) / 999
    d = (_coord_probs() @ grid - GT).abs()
    torch.testing.assert_close(
        _stage2_part("coord_el1", coord_el1_weight=1.0), d.mean(), rtol=1e-5, atol=1e-6
    )
    delta = 0.05
    huber = torch.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    torch.testing.assert_close(
        _stage2_part("coord_ehuber", coord_ehuber_weight=1.0), huber.mean(), rtol=1e-5, atol=1e-6
    )


def test_entropy_is_that_of_the_coord_distribution() -> None:
    p = _coord_probs()
    entropy = -(p * p.log()).sum(dim=1).mean()
    torch.testing.assert_close(
        _stage2_part("coord_entropy", coord_entropy_weight=1.0), entropy, rtol=1e-5, atol=1e-5
    )


def test_weights_scale_the_total_and_zero_weights_skip_terms() -> None:
    z = _logits()
    base = channel_b_loss(z, [(TARGETS, START)], COORD_IDS, SHARED_OFF).total
    stage2 = Stage2Weights(coord_el1_weight=3.0)
    out = channel_b_loss(z, [(TARGETS, START)], COORD_IDS, SHARED_OFF, stage2)
    torch.testing.assert_close(out.total, base + 3.0 * out.parts["coord_el1"])
    assert "coord_ce" not in out.parts
    assert "coord_entropy" not in out.parts


def test_an_empty_answer_set_still_has_a_graph() -> None:
    z = _logits().requires_grad_()
    out = channel_b_loss(z, [], COORD_IDS, SHARED_OFF, Stage2Weights(coord_el1_weight=1.0))
    out.total.backward()
    assert float(out.total.detach()) == 0.0
    assert z.grad is not None


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (0, r"sample 0: its answer starts at row 0 and has 5 tokens; it must start at row >= 1"),
        (4, r"sample 0: its answer starts at row 4 .* within the 8 logits rows"),
    ],
)
def test_answers_outside_the_logits_are_refused(start: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        channel_b_loss(_logits(), [(TARGETS, start)], COORD_IDS, SHARED_OFF)


def test_logits_must_be_flat() -> None:
    with pytest.raises(ValueError, match=r"logits must be \[N, V\], got shape \(1, 8, 1020\)"):
        channel_b_loss(_logits()[None], [(TARGETS, START)], COORD_IDS, SHARED_OFF)
