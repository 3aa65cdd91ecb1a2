"""Channel-A soft self-context: expected coord embeddings, straight-through, detach."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_train.stage2.softctx import expected_coord_embedding, softctx_inputs_embeds

K, D = 1000, 8


def _table(seed: int = 0) -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed))


def _logits(*shape: int, seed: int = 1, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(*shape, K, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.05, 5.0))
def test_soft_is_the_softmax_weighted_mixture(seed: int, temperature: float) -> None:
    z, table = _logits(3, seed=seed), _table(seed)
    got = expected_coord_embedding(z, table, temperature=temperature)
    probs = torch.softmax(z.double() / temperature, dim=-1)
    torch.testing.assert_close(got.double(), probs @ table.double(), rtol=1e-5, atol=1e-5)


def test_a_confident_distribution_gives_its_bin_embedding() -> None:
    z = torch.full((2, K), -50.0)
    z[0, 17], z[1, 999] = 50.0, 50.0
    table = _table()
    torch.testing.assert_close(expected_coord_embedding(z, table), table[[17, 999]])


def test_lower_temperature_moves_towards_the_argmax_embedding() -> None:
    z, table = _logits(4), _table()
    hard = table[z.argmax(-1)]
    far = (expected_coord_embedding(z, table, temperature=2.0) - hard).norm()
    near = (expected_coord_embedding(z, table, temperature=0.1) - hard).norm()
    assert near < far


def test_straight_through_forwards_the_argmax_and_backwards_the_mixture() -> None:
    table = _table()
    z_st = _logits(5).requires_grad_()
    z_soft = z_st.detach().clone().requires_grad_()
    out_st = expected_coord_embedding(z_st, table, mode="straight_through")
    torch.testing.assert_close(out_st, table[z_st.argmax(-1)])
    probe = torch.randn(5, D, generator=torch.Generator().manual_seed(3))
    (out_st * probe).sum().backward()
    (expected_coord_embedding(z_soft, table) * probe).sum().backward()
    assert z_st.grad is not None
    assert z_soft.grad is not None
    assert z_st.grad.abs().sum() > 0
    torch.testing.assert_close(z_st.grad, z_soft.grad)


@pytest.mark.parametrize("mode", ["soft", "straight_through"])
def test_em_detach_stops_the_logit_gradient_but_not_the_embedding_gradient(mode: str) -> None:
    z = _logits(4).requires_grad_()
    table = _table().requires_grad_()
    out = expected_coord_embedding(z, table, mode=mode, grad_mode="em_detach")  # type: ignore[arg-type]
    out.sum().backward()
    assert z.grad is None
    assert table.grad is not None
    assert table.grad.abs().sum() > 0


def test_unroll_lets_the_gradient_reach_the_logits() -> None:
    z = _logits(4).requires_grad_()
    (expected_coord_embedding(z, _table()) * torch.arange(D)).sum().backward()
    assert z.grad is not None
    assert z.grad.abs().sum() > 0


def test_output_keeps_the_embedding_dtype() -> None:
    out = expected_coord_embedding(_logits(2).bfloat16(), _table().bfloat16())
    assert out.dtype == torch.bfloat16


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    vocab = 1100
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(vocab, D, generator=gen)
    coord_ids = torch.arange(100, 100 + K)
    ids = torch.randint(0, 100, (2, 9), generator=gen)
    ids[0, 3], ids[0, 4], ids[1, 8] = 100 + 5, 100 + 700, 100 + 999
    mask = ids >= 100
    logits = torch.randn(2, 9, vocab, generator=gen)
    return weight[ids], logits, mask, coord_ids, weight


def test_coord_positions_take_the_previous_rows_expected_embedding() -> None:
    embeds, logits, mask, coord_ids, weight = _batch()
    out = softctx_inputs_embeds(embeds, logits, mask, coord_ids, weight, temperature=0.7)
    assert torch.equal(out[~mask], embeds[~mask])
    for b, t in mask.nonzero().tolist():
        want = expected_coord_embedding(
            logits[b, t - 1, coord_ids], weight[coord_ids], temperature=0.7
        )
        torch.testing.assert_close(out[b, t], want)
        assert not torch.allclose(out[b, t], embeds[b, t])


def test_inputs_embeds_gradient_flows_to_the_previous_logits_when_unrolled() -> None:
    embeds, logits, mask, coord_ids, weight = _batch()
    logits.requires_grad_()
    softctx_inputs_embeds(embeds, logits, mask, coord_ids, weight).sum().backward()
    assert logits.grad is not None
    rows_with_grad = {tuple(r) for r in (logits.grad.abs().sum(-1) > 0).nonzero().tolist()}
    assert rows_with_grad == {(0, 2), (0, 3), (1, 7)}


def test_a_coord_token_at_position_zero_is_refused() -> None:
    embeds, logits, mask, coord_ids, weight = _batch()
    mask[1, 0] = True
    with pytest.raises(ValueError, match="coord token at position 0"):
        softctx_inputs_embeds(embeds, logits, mask, coord_ids, weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "stage2_ab.softctx_temperature must be > 0, got 0.0"),
        ({"mode": "hard"}, "stage2_ab.softctx_mode must be soft or straight_through, got 'hard'"),
        ({"grad_mode": "none"}, "stage2_ab.softctx_grad_mode must be unroll or em_detach"),
    ],
)
def test_bad_options_are_refused_with_the_key_named(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        expected_coord_embedding(_logits(1), _table(), **kwargs)  # type: ignore[arg-type]


def test_mismatched_bin_counts_are_refused() -> None:
    with pytest.raises(ValueError, match=r"coord_logits \[..., K\] and coord_embeddings \[K, D\]"):
        expected_coord_embedding(torch.zeros(2, 999), _table())
