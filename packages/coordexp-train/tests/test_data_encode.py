"""Chat sample encoding: labels, coord targets, image sizing, positions, lengths."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from coordexp_parse import coord_value, validate_record
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.encode import IGNORE_INDEX, SampleEncoder
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.rope import sample_position_ids
from coordexp_train.data.samples import SampleError
from coordexp_train.model import LoadedModel

RECORD = {
    "images": ["x.png"],
    "width": 200,
    "height": 100,
    "objects": [
        {"desc": "blue circle", "bbox_2d": [100, 50, 150, 99]},
        {"desc": "red square", "bbox_2d": [0, 0, 40, 40]},
        {"desc": "green triangle", "poly": [10, 90, 30, 60, 50, 90]},
    ],
}


class Tiny:
    """The loaded model with a short repr (hypothesis prints its arguments)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def __repr__(self) -> str:
        return "Tiny()"


@pytest.fixture(scope="module")
def tiny(loaded: LoadedModel) -> Tiny:
    return Tiny(loaded)


def _encoder(loaded: LoadedModel, **kw: object) -> SampleEncoder:
    args: dict[str, object] = {"prompt": PromptSpec(), "max_pixels": 128 * 128, "max_length": 4096}
    args.update(kw)
    return SampleEncoder(loaded.processor, **args)  # type: ignore[arg-type]


def _record(data: dict[str, object] = RECORD) -> object:
    return validate_record(data, source="mem.jsonl", line=7)


def _image(record: object) -> Image.Image:
    return Image.new("RGB", (record.width, record.height), (90, 90, 90))  # type: ignore[attr-defined]


def test_only_the_answer_and_its_end_of_turn_are_supervised(loaded: LoadedModel) -> None:
    enc = _encoder(loaded)
    record = _record()
    sample = enc.encode(record, _image(record), index=0)
    tok = loaded.processor.tokenizer
    supervised = sample.labels != IGNORE_INDEX
    first = int(supervised.nonzero()[0])
    assert supervised[first:].all()
    assert not supervised[:first].any()
    assert torch.equal(sample.labels[supervised], sample.input_ids[supervised])
    text = tok.decode(sample.input_ids[supervised])
    answer, _, _ = enc.answer(record, 0)
    assert text == answer + "<|im_end|>"
    assert tok.decode(sample.input_ids[:first]).endswith("<|im_start|>assistant\n")


def test_answer_is_canonical_sorted_and_rendered(loaded: LoadedModel) -> None:
    answer, _, geometries = _encoder(loaded).answer(_record(), 0)
    assert answer.startswith('{"object_1": {"desc": "red square", "bbox_2d": ["<|coord_0|>"')
    assert [k for k, _ in geometries] == ["bbox_2d", "bbox_2d", "poly"]  # top-left order
    parsed = json.loads(answer)
    assert [v["desc"] for v in parsed.values()] == ["red square", "blue circle", "green triangle"]
    assert parsed["object_2"]["bbox_2d"] == [
        "<|coord_502|>",
        "<|coord_505|>",
        "<|coord_753|>",
        "<|coord_999|>",
    ]


def test_geometry_first_changes_the_text_not_the_targets(loaded: LoadedModel) -> None:
    record = _record()
    geometry_first = _encoder(loaded, prompt=PromptSpec(field_order="geometry_first"))
    a = _encoder(loaded).encode(record, _image(record), 0)
    b = geometry_first.encode(record, _image(record), 0)
    assert geometry_first.answer(record, 0)[0].startswith('{"object_1": {"bbox_2d": [')
    assert torch.equal(a.coord_bins, b.coord_bins)
    assert not torch.equal(a.coord_positions, b.coord_positions)


def test_coord_positions_hold_the_target_coord_tokens(loaded: LoadedModel) -> None:
    record = _record()
    sample = _encoder(loaded).encode(record, _image(record), 0)
    tok = loaded.processor.tokenizer
    pieces = tok.convert_ids_to_tokens(sample.input_ids[sample.coord_positions].tolist())
    assert [coord_value(p) for p in pieces] == sample.coord_bins.tolist()
    assert sample.coord_bins.shape == (4 + 6 + 4,)
    assert sample.coord_object.tolist() == [0] * 4 + [1] * 4 + [2] * 6
    assert sample.box_slots.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    all_coord_positions = [
        t
        for t, p in enumerate(tok.convert_ids_to_tokens(sample.input_ids.tolist()))
        if coord_value(p) is not None and sample.labels[t] != IGNORE_INDEX
    ]
    assert sample.coord_positions.tolist() == all_coord_positions


def test_zero_objects_answer_empty_braces(loaded: LoadedModel) -> None:
    record = _record({**RECORD, "objects": []})
    enc = _encoder(loaded)
    sample = enc.encode(record, _image(record), 0)
    assert enc.answer(record, 0)[0] == "{}"
    assert sample.coord_positions.numel() == 0
    assert sample.box_slots.shape == (0, 4)
    assert sample.num_objects == 0


def test_separately_tokenised_answer_equals_the_whole_chat_template(loaded: LoadedModel) -> None:
    record = _record()
    enc = _encoder(loaded)
    sample = enc.encode(record, _image(record), 0)
    answer, _, _ = enc.answer(record, 0)
    messages = [
        *prompt_messages(PromptSpec()),
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    full = loaded.processor.apply_chat_template(messages, tokenize=False)
    assert full.endswith("<|im_end|>\n")
    whole = loaded.processor(
        text=[full[: -len("\n")]],
        images=[_image(record)],
        return_tensors="pt",
        size={"shortest_edge": enc.min_pixels, "longest_edge": enc.max_pixels},
    )["input_ids"][0]
    assert torch.equal(whole, sample.input_ids)


@settings(max_examples=12, deadline=None)
@given(
    width=st.integers(16, 400), height=st.integers(16, 400), max_side=st.sampled_from([32, 96, 160])
)
def test_measured_length_equals_encoded_length_and_pixels_stay_bounded(
    tiny: Tiny, width: int, height: int, max_side: int
) -> None:
    loaded = tiny.loaded
    if max(width, height) / min(width, height) > 20:
        return
    record = _record({"images": ["x.png"], "width": width, "height": height, "objects": []})
    enc = _encoder(loaded, max_pixels=max_side * max_side)
    sample = enc.encode(record, _image(record), 0)
    assert enc.measure(record, 0) == sample.length
    _, gh, gw = sample.image_grid_thw[0].tolist()
    # within max_pixels, unless a side would drop below one merged patch (32 px)
    assert gh * gw * 16 * 16 <= max_side * max_side or min(gh, gw) * 16 == 32
    assert sample.pixel_values.shape[0] == gh * gw


def test_too_long_sample_names_the_record_and_the_limit(loaded: LoadedModel) -> None:
    record = _record()
    with pytest.raises(SampleError) as err:
        _encoder(loaded, max_length=100).measure(record, 0)
    assert err.value.reason == "too_long"
    assert "mem.jsonl:7" in str(err.value)
    assert "longer than global_max_length 100" in str(err.value)


def test_random_order_is_seeded_per_sample(loaded: LoadedModel) -> None:
    objects = [
        {"desc": f"red square {i}", "bbox_2d": [i * 10, i * 5, i * 10 + 5, i * 5 + 4]}
        for i in range(8)
    ]
    record = _record({**RECORD, "objects": objects})
    enc = _encoder(loaded, object_order="random", seed=3)
    first = enc.answer(record, 0)[0]
    assert first == _encoder(loaded, object_order="random", seed=3).answer(record, 0)[0]
    assert first != enc.answer(record, 1)[0]
    assert first != _encoder(loaded).answer(record, 0)[0]


def test_positions_match_transformers_rope_index(loaded: LoadedModel) -> None:
    tok = loaded.processor.tokenizer
    images = [Image.new("RGB", (96, 160)), Image.new("RGB", (200, 64))]
    text = "<|im_start|>user\n" + "<|vision_start|><|image_pad|><|vision_end|>ab " * 2 + "tail"
    enc = loaded.processor(text=[text], images=images, return_tensors="pt")
    ours = sample_position_ids(
        enc["input_ids"][0],
        enc["image_grid_thw"],
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        spatial_merge_size=2,
    )
    theirs, _ = loaded.model.model.get_rope_index(
        enc["input_ids"], enc["mm_token_type_ids"], image_grid_thw=enc["image_grid_thw"]
    )
    assert torch.equal(ours[1:], theirs[:, 0])
    assert torch.equal(ours[0], torch.arange(enc["input_ids"].shape[1]))


def test_positions_refuse_a_grid_that_does_not_match_the_pads() -> None:
    ids = torch.tensor([1, 9, 9, 9, 2])
    with pytest.raises(ValueError, match="expected a run of 4 image tokens"):
        sample_position_ids(ids, torch.tensor([[1, 4, 4]]), image_token_id=9, spatial_merge_size=2)


def test_max_pixels_below_one_merged_patch_is_refused(loaded: LoadedModel) -> None:
    with pytest.raises(ValueError, match=r"template\.max_pixels must be at least 1024"):
        _encoder(loaded, max_pixels=500)
