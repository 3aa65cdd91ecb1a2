"""CoordExp distribution losses and box losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from coordexp_train.losses import (
    canonical_boxes,
    ciou_loss,
    expected_coord,
    gaussian_bin_target,
    giou_loss,
    iou,
    l1,
    smooth_l1,
    soft_ce,
    w1_distance,
)


def _one_hot_logits(bins: list[int]) -> torch.Tensor:
    z = torch.full((len(bins), 1000), -1e4)
    z[torch.arange(len(bins)), torch.tensor(bins)] = 0.0
    return z


def test_expected_coord_of_a_point_mass_is_its_bin_over_999() -> None:
    out = expected_coord(_one_hot_logits([0, 999, 500]))
    assert torch.allclose(out, torch.tensor([0.0, 1.0, 500 / 999]), atol=1e-6)


def test_expected_coord_of_uniform_logits_is_one_half_and_in_unit_interval() -> None:
    z = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0)) * 8
    out = expected_coord(z, temperature=0.3)
    assert ((out >= 0) & (out <= 1)).all()
    assert expected_coord(torch.zeros(1, 1000)).item() == pytest.approx(0.5, abs=1e-6)


def test_low_temperature_sharpens_the_expectation_towards_the_argmax() -> None:
    z = torch.zeros(1, 1000)
    z[0, 100] = 2.0
    hot = expected_coord(z, temperature=0.05).item()
    warm = expected_coord(z, temperature=1.0).item()
    assert abs(hot - 100 / 999) < abs(warm - 100 / 999)
    assert hot == pytest.approx(100 / 999, abs=1e-4)


def test_gaussian_target_is_normalised_peaked_and_truncated() -> None:
    q = gaussian_bin_target(torch.tensor([0, 500, 999]), sigma=2.0, truncation=3)
    assert torch.allclose(q.sum(1), torch.ones(3), atol=1e-6)
    assert q.argmax(1).tolist() == [0, 500, 999]
    assert (q[1, :497] == 0).all()
    assert (q[1, 504:] == 0).all()
    assert (q[1, 497:504] > 0).all()
    full = gaussian_bin_target(torch.tensor([500]), sigma=2.0)
    assert (full[0, 490] > 0).item()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sigma": 0.0}, "sigma"), ({"sigma": 1.0, "truncation": -1}, "truncation")],
)
def test_gaussian_target_rejects_bad_shape_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gaussian_bin_target(torch.tensor([3]), **kwargs)  # type: ignore[arg-type]


def test_gaussian_target_rejects_out_of_range_bins() -> None:
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        gaussian_bin_target(torch.tensor([1000]), sigma=1.0)


def test_soft_ce_is_minimal_at_the_target_distribution() -> None:
    q = gaussian_bin_target(torch.tensor([321]), sigma=2.0, truncation=6)
    at_target = soft_ce(torch.log(q.clamp(min=1e-30)), q)
    entropy = -(q * torch.log(q.clamp(min=1e-30))).sum(1)
    assert torch.allclose(at_target, entropy, atol=1e-3)
    shifted = soft_ce(torch.log(torch.roll(q, 5, 1).clamp(min=1e-30)), q)
    assert (shifted > at_target).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999))
def test_w1_between_point_masses_is_their_distance(i: int, j: int) -> None:
    q = torch.zeros(1, 1000)
    q[0, j] = 1.0
    w1 = w1_distance(_one_hot_logits([i]), q)
    assert w1.item() == pytest.approx(abs(i - j) / 999, abs=1e-5)


def test_distribution_losses_gradcheck_float64() -> None:
    z = torch.randn(2, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z.requires_grad_()
    q = gaussian_bin_target(torch.tensor([10, 700]), sigma=3.0)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([soft_ce(x, q, 0.8), w1_distance(x, q, 0.8), expected_coord(x, 0.8)])

    assert torch.autograd.gradcheck(f.__call__, (z,), eps=1e-3, atol=2e-3, rtol=1e-2)


def test_coord_losses_reject_a_wrong_bin_count() -> None:
    with pytest.raises(ValueError, match=r"\[M, 1000\]"):
        expected_coord(torch.zeros(2, 999))


# ---------------------------------------------------------------------------------- boxes

BOX = st.tuples(*[st.floats(0, 1, allow_nan=False) for _ in range(4)])


def _coco_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    def xywh(box: tuple[float, ...]) -> list[float]:
        x1, x2 = sorted((box[0], box[2]))
        y1, y2 = sorted((box[1], box[3]))
        return [x1 * 1000, y1 * 1000, (x2 - x1) * 1000, (y2 - y1) * 1000]

    return float(coco_mask.iou(np.array([xywh(a)]), np.array([xywh(b)]), [0])[0, 0])


@settings(max_examples=60, deadline=None)
@given(BOX, BOX)
def test_iou_matches_pycocotools(a: tuple[float, ...], b: tuple[float, ...]) -> None:
    ours = iou(torch.tensor([a]), torch.tensor([b])).item()

    def area(box: tuple[float, ...]) -> float:
        return abs(box[2] - box[0]) * abs(box[3] - box[1])

    if area(a) == 0 and area(b) == 0:  # pycocotools divides 0 by 0 (nan); ours is 0
        assert ours == 0.0
        return
    # the union's eps (1e-7) shifts IoU by at most eps / union
    tolerance = 1e-5 + 1e-7 / max(area(a), area(b), 1e-7)
    assert ours == pytest.approx(_coco_iou(a, b), abs=tolerance)


def test_identical_boxes_have_zero_giou_and_ciou_loss() -> None:
    b = torch.tensor([[0.1, 0.2, 0.5, 0.7]])
    assert giou_loss(b, b).item() == pytest.approx(0.0, abs=1e-5)
    assert ciou_loss(b, b).item() == pytest.approx(0.0, abs=1e-5)


def test_disjoint_boxes_have_giou_loss_above_one() -> None:
    a, b = torch.tensor([[0.0, 0.0, 0.1, 0.1]]), torch.tensor([[0.5, 0.5, 0.9, 0.9]])
    assert 1.0 < giou_loss(a, b).item() < 2.0
    assert ciou_loss(a, b).item() > 1.0


def test_overlap_losses_canonicalise_and_clip() -> None:
    swapped = torch.tensor([[0.5, 0.7, 0.1, 0.2]])
    straight = torch.tensor([[0.1, 0.2, 0.5, 0.7]])
    assert torch.equal(canonical_boxes(swapped), straight)
    t = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    assert torch.allclose(giou_loss(swapped, t), giou_loss(straight, t))
    outside = torch.tensor([[-0.5, -0.5, 1.5, 1.5]])
    assert torch.equal(canonical_boxes(outside), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_degenerate_boxes_stay_finite_with_finite_gradients() -> None:
    pred = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4]])
    loss = giou_loss(pred, target).sum() + ciou_loss(pred, target).sum()
    loss.backward()
    assert torch.isfinite(loss)
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()


def test_ciou_penalises_centre_distance_at_equal_iou() -> None:
    t = torch.tensor([[0.4, 0.4, 0.6, 0.6]])
    near = torch.tensor([[0.0, 0.4, 0.2, 0.6]])
    far = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    assert ciou_loss(far, t).item() > ciou_loss(near, t).item()


def test_box_losses_gradcheck_float64() -> None:
    pred = torch.tensor([[0.1, 0.2, 0.45, 0.8], [0.3, 0.1, 0.7, 0.5]], dtype=torch.float64)
    target = torch.tensor([[0.15, 0.25, 0.5, 0.7], [0.2, 0.2, 0.6, 0.6]], dtype=torch.float64)
    pred.requires_grad_()

    def f(p: torch.Tensor) -> torch.Tensor:
        return torch.cat([giou_loss(p, target), ciou_loss(p, target)]).double()

    assert torch.autograd.gradcheck(f, (pred,), eps=1e-4, atol=1e-3, rtol=1e-2)


def test_l1_and_smooth_l1_values() -> None:
    p, t = torch.tensor([0.0, 0.0]), torch.tensor([0.05, 0.5])
    assert torch.allclose(l1(p, t), torch.tensor([0.05, 0.5]))
    assert torch.allclose(smooth_l1(p, t, beta=0.1), torch.tensor([0.5 * 0.05**2 / 0.1, 0.45]))
    with pytest.raises(ValueError, match="beta"):
        smooth_l1(p, t, beta=0.0)


def test_box_losses_reject_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        giou_loss(torch.zeros(2, 3), torch.zeros(2, 3))
