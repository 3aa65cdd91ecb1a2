"""Properties of Channel-B targets over random rollouts (real tokenizer, parse, match)."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from coordexp_parse import DetObject, Owner, Role, coord_token, render_objects
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.model import BUILTIN_SPECS
from coordexp_train.model.tiny_tokenizer import tokenizer_corpus, train_tiny_tokenizer
from coordexp_train.stage2 import build_channel_b_sample

DESCS = ["cat", "dog", "red square", "tree", "blue circle"]
MATCHING = RolloutMatchingConfig()


class Tiny:
    """The tiny tokenizer with a short repr (hypothesis prints its arguments)."""

    def __init__(self) -> None:
        spec = BUILTIN_SPECS["tiny-qwen3-vl"]
        self.tokenizer = train_tiny_tokenizer(
            tokenizer_corpus(), bpe_vocab_size=spec.bpe_vocab_size
        )

    def __repr__(self) -> str:
        return "Tiny()"


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    return Tiny()


@st.composite
def objects(draw: st.DrawFn) -> DetObject:
    desc = draw(st.sampled_from(DESCS))
    if draw(st.booleans()):
        x1, x2 = sorted(draw(st.lists(st.integers(0, 999), min_size=2, max_size=2)))
        y1, y2 = sorted(draw(st.lists(st.integers(0, 999), min_size=2, max_size=2)))
        return DetObject(desc, "bbox_2d", (x1, y1, x2, y2))
    n = draw(st.integers(3, 5))
    return DetObject(
        "tree", "poly", tuple(draw(st.lists(st.integers(0, 999), min_size=2 * n, max_size=2 * n)))
    )


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[DetObject], str]:
    """Ground truth and a rollout: copies of some GTs, invented objects, maybe cut short."""
    gts = draw(st.lists(objects(), max_size=4))
    copies = [g for g in gts if draw(st.booleans())]
    preds = draw(st.permutations(copies + draw(st.lists(objects(), max_size=3))))
    text = render_objects(preds)
    if draw(st.booleans()):
        text = text[:-1] + ', "object_9": {"desc": "dog", "bbox_2d": ["<|coord_5|>"]}}'
    cut = draw(st.integers(0, len(text)))
    return gts, text[:cut] if draw(st.booleans()) else text


@settings(max_examples=60, deadline=None)
@given(scene=scenes(), stop_neutral=st.booleans(), desc_w=st.sampled_from([0.0, 0.5, 1.0]))
def test_mask_policy_holds_on_random_rollouts(
    tiny: Tiny,
    scene: tuple[list[DetObject], str],
    stop_neutral: bool,
    desc_w: float,
) -> None:
    gts, text = scene
    tokenizer = tiny.tokenizer
    policy = ChannelBConfig(stop_neutral=stop_neutral, desc_ce_weight=desc_w)
    ids = tokenizer.encode(text, add_special_tokens=False)
    s = build_channel_b_sample(ids, gts, tokenizer, MATCHING, policy)
    a, t = s.answer, s.targets
    event(f"matched: {bool(s.result.pairs)}, fp: {bool(s.result.fp)}, fn: {bool(s.result.fn)}")
    event(f"dropped: {s.parse.num_dropped > 0}, truncated: {s.parse.truncated}")
    for owner, role, w in zip(a.owners, a.roles, t.ce_weights, strict=True):
        if role in (Role.CLOSE, Role.END):
            assert (w == 0.0) is stop_neutral
        elif role is Role.COORD or owner in (Owner.FP, Owner.NONE):
            assert w == 0.0
        elif owner is Owner.MATCHED:
            assert w == (0.0 if role is Role.DESC else 1.0)
        else:
            assert w == (desc_w if role is Role.DESC else 1.0)
    # coord supervision: exactly the matched and injected objects' coord tokens
    # (a bbox learns any GT's box; a polygon only a polygon GT with as many coordinates)
    learnable = [
        p
        for p, g in s.result.pairs
        if s.parse.objects[p].kind == "bbox_2d"
        or (gts[g].kind == "poly" and len(gts[g].coords) == len(s.parse.objects[p].coords))
    ]
    assert t.unsupervised_coord_objects == len(s.result.pairs) - len(learnable)
    matched_positions = {q for p in learnable for q in a.pred_coord_positions[p]}
    fn_positions = {q for obj in a.fn_coord_positions for q in obj}
    assert set(t.coord_positions) == matched_positions | fn_positions
    assert list(t.coord_positions) == sorted(t.coord_positions)
    assert all(a.roles[p] is Role.COORD for p in t.coord_positions)
    assert len(t.coord_bins) == len(t.coord_positions)
    # injected coord tokens are the tokens of their target bins
    bin_at = dict(zip(t.coord_positions, t.coord_bins, strict=True))
    assert all(a.text[slice(*a.spans[p])] == coord_token(bin_at[p]) for p in fn_positions)
    # every box groups four coords of one object, in order
    for box in t.box_index:
        positions = [t.coord_positions[j] for j in box]
        assert positions == sorted(positions)
        assert len({a.ordinals[p] for p in positions}) == 1
    assert s == build_channel_b_sample(ids, gts, tokenizer, MATCHING, policy)
