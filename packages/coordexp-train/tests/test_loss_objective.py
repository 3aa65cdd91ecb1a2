"""The Stage-1 objective and the coord metrics path (one gate helper, seed 000)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coordexp_train.coord_metrics import coord_token_metrics
from coordexp_train.losses import (
    IGNORE_INDEX,
    Stage1LossWeights,
    ciou_loss,
    coord_terms,
    coord_vocab_gate,
    expected_coord,
    gaussian_bin_target,
    smooth_l1,
    soft_ce,
    stage1_loss,
    w1_distance,
)

VOCAB = 1100
# coord bin k is token id COORD_IDS[k]: deliberately not a contiguous range
COORD_IDS = torch.randperm(1000, generator=torch.Generator().manual_seed(0)) + 100
TEXT_ONLY = Stage1LossWeights(
    soft_ce_weight=0.0, w1_weight=0.0, gate_weight=0.0, text_ce_weight=1.0, coord_ce_weight=0.0
)


def _batch(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 12 tokens: prompt (-100), then text and coord labels."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, 12, VOCAB, generator=g) * 2).to(dtype)
    labels = torch.full((2, 12), IGNORE_INDEX)
    labels[0, 3:11] = torch.tensor([5, 7, *COORD_IDS[[10, 20, 300, 400]].tolist(), 9, 2])
    labels[1, 5:12] = torch.tensor([6, *COORD_IDS[[999, 0, 500, 501]].tolist(), 8, 2])
    return logits, labels


def _rows_and_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, t = labels.shape
    flat = labels.reshape(-1)
    pos = torch.arange(b * t)
    keep = (flat != IGNORE_INDEX) & (pos % t != 0)
    return pos[keep] - 1, flat[keep]


def test_token_ce_matches_shifted_cross_entropy_on_text_tokens() -> None:
    logits, labels = _batch()
    out = stage1_loss(logits, labels, COORD_IDS, TEXT_ONLY)
    shifted = labels[:, 1:].clone()
    shifted[torch.isin(shifted, COORD_IDS)] = IGNORE_INDEX
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), shifted.reshape(-1))
    assert out.total.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.parts["token_ce"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_coord_ce_weight_scales_coord_tokens_only() -> None:
    logits, labels = _batch()
    rows, targets = _rows_and_targets(labels)
    ce = F.cross_entropy(logits.reshape(-1, VOCAB)[rows], targets, reduction="none")
    is_coord = torch.isin(targets, COORD_IDS)
    w = Stage1LossWeights(
        soft_ce_weight=0.0, w1_weight=0.0, gate_weight=0.0, text_ce_weight=0.5, coord_ce_weight=2
    )
    out = stage1_loss(logits, labels, COORD_IDS, w)
    ref = (ce[~is_coord].sum() * 0.5 + ce[is_coord].sum() * 2) / ce.numel()
    assert out.parts["token_ce"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_coord_terms_equal_the_component_functions_at_coord_positions() -> None:
    logits, labels = _batch(seed=1)
    rows, targets = _rows_and_targets(labels)
    is_coord = torch.isin(targets, COORD_IDS)
    bins = torch.tensor([int((t == COORD_IDS).nonzero()) for t in targets[is_coord]])
    coord_logits = logits.reshape(-1, VOCAB)[rows[is_coord]][:, COORD_IDS]
    w = Stage1LossWeights(soft_ce_sigma=3.0, soft_ce_truncation_radius=5, gate_temperature=1.5)
    out = stage1_loss(logits, labels, COORD_IDS, w)
    q = gaussian_bin_target(bins, 3.0, 5)
    assert out.parts["soft_ce"].item() == pytest.approx(soft_ce(coord_logits, q).mean().item())
    assert out.parts["w1"].item() == pytest.approx(w1_distance(coord_logits, q).mean().item())
    full = logits.reshape(-1, VOCAB)[rows[is_coord]]
    gate = coord_vocab_gate(full, coord_logits, temperature=1.5)
    assert out.parts["gate"].item() == pytest.approx(gate.loss.mean().item(), rel=1e-6)


def test_gate_values_are_identical_through_the_loss_and_the_metrics_paths() -> None:
    logits, labels = _batch(seed=2)
    logits[0, 4, 17] = float("nan")
    logits[1, 7, 3] = float("inf")
    w = Stage1LossWeights(gate_temperature=0.7)
    from_loss = stage1_loss(logits, labels, COORD_IDS, w).gate_per_position
    from_metrics = coord_token_metrics(logits, labels, COORD_IDS, gate_temperature=0.7)
    assert from_loss is not None
    assert torch.equal(from_loss, from_metrics.gate_per_position)
    # and both are the documented formula
    rows, targets = _rows_and_targets(labels)
    sel = rows[torch.isin(targets, COORD_IDS)]
    x = torch.nan_to_num(logits.reshape(-1, VOCAB)[sel].double(), nan=0.0, posinf=1e4)
    ref = (torch.logsumexp(x / 0.7, 1) - torch.logsumexp(x[:, COORD_IDS] / 0.7, 1)).clamp(min=0)
    assert torch.allclose(from_loss.double(), ref, atol=1e-3)


def test_box_losses_use_expectation_decoded_boxes() -> None:
    logits, labels = _batch(seed=3)
    # flat label positions of the two boxes' x1, y1, x2, y2
    boxes = torch.tensor([[5, 6, 7, 8], [12 + 6, 12 + 7, 12 + 8, 12 + 9]])
    w = Stage1LossWeights(
        soft_ce_weight=0, w1_weight=0, gate_weight=0, bbox_smoothl1_weight=1, bbox_ciou_weight=1
    )
    out = stage1_loss(logits, labels, COORD_IDS, w, bbox_label_positions=boxes)
    flat_logits = logits.reshape(-1, VOCAB)
    pred = expected_coord(flat_logits[boxes.reshape(-1) - 1][:, COORD_IDS]).reshape(2, 4)
    gt = torch.tensor([[10, 20, 300, 400], [999, 0, 500, 501]]) / 999
    assert out.parts["bbox_smoothl1"].item() == pytest.approx(
        smooth_l1(pred, gt, 0.1).mean().item(), rel=1e-6
    )
    assert out.parts["bbox_ciou"].item() == pytest.approx(ciou_loss(pred, gt).mean().item())


def test_box_positions_must_be_coord_labels() -> None:
    logits, labels = _batch()
    w = Stage1LossWeights(bbox_ciou_weight=1.0)
    with pytest.raises(ValueError, match="bbox_label_positions"):
        stage1_loss(logits, labels, COORD_IDS, w, bbox_label_positions=torch.tensor([[3, 5, 6, 7]]))


def test_gradients_reach_only_supervised_rows() -> None:
    logits, labels = _batch(seed=4)
    logits.requires_grad_()
    w = Stage1LossWeights(text_gate_weight=1.0, coord_ce_weight=0.3)
    stage1_loss(logits, labels, COORD_IDS, w).total.backward()
    assert logits.grad is not None
    rows, _ = _rows_and_targets(labels)
    touched = logits.grad.reshape(-1, VOCAB).abs().sum(1) > 0
    expected = torch.zeros(24, dtype=torch.bool)
    expected[rows] = True
    assert torch.equal(touched, expected)


def test_bf16_logits_give_float32_losses_close_to_float32_logits() -> None:
    logits, labels = _batch(seed=5)
    w = Stage1LossWeights(text_gate_weight=1.0)
    full = stage1_loss(logits, labels, COORD_IDS, w)
    half = stage1_loss(logits.bfloat16(), labels, COORD_IDS, w)
    assert half.total.dtype == torch.float32
    assert half.total.item() == pytest.approx(full.total.item(), rel=2e-2)


def test_a_batch_without_supervised_positions_gives_zero_and_backpropagates() -> None:
    logits, _ = _batch()
    logits.requires_grad_()
    labels = torch.full((2, 12), IGNORE_INDEX)
    out = stage1_loss(logits, labels, COORD_IDS, Stage1LossWeights(text_gate_weight=1.0))
    out.total.backward()
    assert out.total.item() == 0.0
    assert "coord_mass" not in out.parts
    assert logits.grad is not None
    assert not logits.grad.any()


def test_text_only_batch_has_finite_zero_coord_terms() -> None:
    logits, labels = _batch()
    labels[torch.isin(labels, COORD_IDS)] = 5
    out = stage1_loss(logits, labels, COORD_IDS, Stage1LossWeights())
    assert out.parts["soft_ce"].item() == 0.0
    assert out.parts["w1"].item() == 0.0
    assert "gate" not in out.parts
    assert torch.isfinite(out.total)


def test_label_outside_the_vocabulary_is_rejected() -> None:
    logits, labels = _batch()
    labels[0, 4] = VOCAB + 3
    with pytest.raises(ValueError, match="label ids must be -100 or in"):
        stage1_loss(logits, labels, COORD_IDS, Stage1LossWeights())


def test_metrics_report_mass_accuracy_and_mae() -> None:
    logits, labels = _batch()
    rows, targets = _rows_and_targets(labels)
    is_coord = torch.isin(targets, COORD_IDS)
    flat = logits.reshape(-1, VOCAB)
    flat[rows[is_coord], targets[is_coord]] = 60.0  # confident and right
    m = coord_token_metrics(logits, labels, COORD_IDS)
    assert m.coord_positions == 8
    assert m.coord_argmax_accuracy == 1.0
    assert m.coord_mass == pytest.approx(1.0, abs=1e-6)
    assert m.expected_coord_mae == pytest.approx(0.0, abs=1e-4)


def test_coord_terms_take_target_bins_from_the_caller() -> None:
    """Stage 2's case: the target bin of a position is not the token written there."""
    logits, _ = _batch(seed=6)
    flat = logits.reshape(-1, VOCAB)
    rows = torch.tensor([3, 4, 5, 6, 15])
    bins = torch.tensor([100, 200, 300, 400, 7])
    w = Stage1LossWeights(bbox_ciou_weight=1.0, bbox_smoothl1_weight=0.5)
    out = coord_terms(flat, rows, bins, COORD_IDS, w, box_index=torch.tensor([[0, 1, 2, 3]]))
    coord_logits = flat[rows][:, COORD_IDS]
    q = gaussian_bin_target(bins, 2.0)
    assert out.parts["soft_ce"].item() == pytest.approx(soft_ce(coord_logits, q).mean().item())
    assert out.parts["w1"].item() == pytest.approx(w1_distance(coord_logits, q).mean().item())
    pred = expected_coord(coord_logits)[:4][None]
    gt = torch.tensor([[100, 200, 300, 400]]) / 999
    assert out.parts["bbox_ciou"].item() == pytest.approx(ciou_loss(pred, gt).item())
    expected_total = (
        out.parts["gate"]
        + out.parts["soft_ce"]
        + out.parts["w1"]
        + out.parts["bbox_ciou"]
        + 0.5 * out.parts["bbox_smoothl1"]
    )
    assert out.total.item() == pytest.approx(expected_total.item())
    with pytest.raises(ValueError, match="box_index must index"):
        coord_terms(flat, rows, bins, COORD_IDS, w, box_index=torch.tensor([[0, 1, 2, 9]]))
