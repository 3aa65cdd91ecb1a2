"""Chunked row log-sum-exp and the coord-vocab gate (seed 000)."""

from __future__ import annotations

import math

import pytest
import torch

from coordexp_train.losses import coord_vocab_gate, row_logsumexp_and_pick
from coordexp_train.losses import rows as rows_module


def _logits(n: int, v: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * 3).to(dtype)


def test_row_lse_and_picks_match_direct_computation() -> None:
    x = _logits(7, 50)
    rows = torch.tensor([3, 0, 3, 6])
    cols = torch.tensor([[1, 2], [0, 49], [5, 5], [10, 11]])
    lse, picked = row_logsumexp_and_pick(x, rows, cols, temperature=0.7)
    assert torch.allclose(lse.double(), torch.logsumexp(x[rows] / 0.7, 1), atol=1e-5)
    assert torch.allclose(picked.double(), x[rows[:, None], cols], atol=1e-5)


def test_row_lse_chunking_gives_the_same_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _logits(9, 40, dtype=torch.float32).requires_grad_()
    rows = torch.tensor([8, 1, 1, 4, 0, 2, 8])
    cols = torch.randint(0, 40, (7, 3), generator=torch.Generator().manual_seed(1))

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x.grad = None
        lse, picked = row_logsumexp_and_pick(x, rows, cols, temperature=1.3)
        (lse.sin().sum() + picked.cos().sum()).backward()
        assert x.grad is not None
        return lse.detach(), picked.detach(), x.grad.clone()

    whole = run()
    monkeypatch.setattr(rows_module, "CHUNK_ELEMENTS", 40 * 2)  # two rows per chunk
    chunked = run()
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_row_lse_gradcheck_float64() -> None:
    x = _logits(4, 12).requires_grad_()
    rows = torch.tensor([0, 2, 2, 3])
    cols = torch.tensor([[1], [3], [0], [11]])

    def f(inp: torch.Tensor) -> torch.Tensor:
        lse, picked = row_logsumexp_and_pick(inp, rows, cols, temperature=0.5)
        # the function computes in float32: compare in that precision
        return lse.double() * 1.0 + picked.double()[:, 0] * 0.5

    assert torch.autograd.gradcheck(f, (x,), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_fenced_logits_get_no_gradient_and_finite_values() -> None:
    x = torch.tensor([[0.0, float("nan"), 1.0, float("inf")], [2.0, -float("inf"), 3e4, 1.0]])
    x.requires_grad_()
    lse, picked = row_logsumexp_and_pick(x, torch.tensor([0, 1]), torch.tensor([[1], [2]]))
    assert torch.isfinite(lse).all()
    assert picked[0, 0].item() == 0.0  # NaN -> 0
    assert picked[1, 0].item() == 1e4  # clamped
    (lse.sum() + picked.sum()).backward()
    assert x.grad is not None
    assert x.grad[0, 1] == 0
    assert x.grad[0, 3] == 0
    assert x.grad[1, 1] == 0
    assert x.grad[1, 2] == 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bad", ["rows", "temperature"])
def test_row_lse_rejects_bad_arguments(bad: str) -> None:
    x = _logits(3, 5)
    rows = torch.tensor([0, 1]) if bad != "rows" else torch.tensor([[0, 1]])
    temperature = 0.0 if bad == "temperature" else 1.0
    with pytest.raises(ValueError, match=bad):
        row_logsumexp_and_pick(x, rows, torch.zeros(2, 1, dtype=torch.long), temperature)


# ------------------------------------------------------------------------------- the gate

COORD_COLS = torch.arange(20, 60)  # 40 "coord" columns of a 64-wide vocabulary


def _reference_gate(full: torch.Tensor, t: float) -> torch.Tensor:
    p = torch.softmax(full.double() / t, dim=1)
    return (-torch.log(p[:, COORD_COLS].sum(1))).clamp(min=0)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gate_is_minus_log_coord_mass(temperature: float) -> None:
    full = _logits(6, 64, seed=3)
    out = coord_vocab_gate(full, full[:, COORD_COLS], temperature=temperature)
    ref = _reference_gate(full, temperature)
    assert torch.allclose(out.loss.double(), ref, atol=1e-5)
    assert torch.allclose(out.coord_mass.double(), torch.exp(-ref), atol=1e-6)
    assert out.loss.dtype == torch.float32


def test_gate_rows_argument_selects_positions() -> None:
    full = _logits(6, 64, seed=4)
    rows = torch.tensor([5, 1])
    by_rows = coord_vocab_gate(full, full[rows][:, COORD_COLS], rows=rows)
    copied = coord_vocab_gate(full[rows], full[rows][:, COORD_COLS])
    assert torch.equal(by_rows.loss, copied.loss)


def test_gate_is_clamped_at_zero_when_coord_logits_exceed_the_full_ones() -> None:
    full = torch.zeros(2, 64)
    out = coord_vocab_gate(full, torch.full((2, 40), 50.0))
    assert torch.equal(out.loss, torch.zeros(2))
    assert torch.equal(out.coord_mass, torch.ones(2))


def test_gate_fences_nan_and_inf() -> None:
    full = _logits(3, 64, seed=5, dtype=torch.float32)
    full[0, 3] = float("nan")
    full[1, 25] = float("inf")
    full[2, :] = -float("inf")
    out = coord_vocab_gate(full, full[:, COORD_COLS])
    assert torch.isfinite(out.loss).all()
    assert torch.isfinite(out.coord_mass).all()
    fenced = torch.nan_to_num(full, nan=0.0, posinf=1e4, neginf=-1e4)
    # float32 at |x| = 1e4 resolves ~1e-3
    assert torch.allclose(out.loss.double(), _reference_gate(fenced, 1.0), atol=2e-3)


def test_text_side_mirror_is_minus_log_non_coord_mass_with_floor() -> None:
    full = _logits(5, 64, seed=6)
    out = coord_vocab_gate(full, full[:, COORD_COLS], side="text")
    mass = torch.exp(-_reference_gate(full, 1.0))
    assert torch.allclose(out.loss.double(), -torch.log1p(-mass), atol=1e-5)
    all_coord = torch.full((1, 64), -1e4)
    all_coord[0, COORD_COLS] = 0.0
    floored = coord_vocab_gate(all_coord, all_coord[:, COORD_COLS], side="text")
    assert floored.loss.item() == pytest.approx(-math.log(1e-6), rel=1e-5)


def test_gate_gradcheck_float64() -> None:
    full = _logits(3, 64, seed=7).requires_grad_()

    def f(x: torch.Tensor) -> torch.Tensor:
        return coord_vocab_gate(x, x[:, COORD_COLS], temperature=1.5).loss.double()

    assert torch.autograd.gradcheck(f, (full,), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_gate_gradient_pushes_mass_onto_coord_tokens() -> None:
    full = _logits(4, 64, seed=8, dtype=torch.float32).requires_grad_()
    coord_vocab_gate(full, full[:, COORD_COLS]).loss.sum().backward()
    assert full.grad is not None
    assert (full.grad[:, COORD_COLS] <= 1e-7).all()  # descending raises coord logits
    others = torch.ones(64, dtype=torch.bool)
    others[COORD_COLS] = False
    assert (full.grad[:, others] >= -1e-7).all()


def test_gate_rejects_bad_side_and_shapes() -> None:
    full = _logits(2, 64)
    with pytest.raises(ValueError, match="side"):
        coord_vocab_gate(full, full[:, COORD_COLS], side="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gated positions"):
        coord_vocab_gate(full, full[:1, COORD_COLS])
