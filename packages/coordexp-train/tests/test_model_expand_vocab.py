"""expand-vocab adds the coord tokens to a stock checkpoint; loading refuses one without."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForImageTextToText

from coordexp_parse import all_coord_tokens
from coordexp_train.model import (
    BUILTIN_SPECS,
    COORD_VOCAB_FILE,
    CoordVocabError,
    ExpandVocabError,
    build_tiny_model,
    expand_vocab,
    load_model_and_processor,
)
from coordexp_train.model.coord_init import EXPAND_SCALE, coord_offsets
from coordexp_train.model.embeddings import input_embedding, output_embedding
from coordexp_train.model.processor import load_processor


def _settings(model: Path | str) -> SimpleNamespace:
    return SimpleNamespace(model=str(model), dtype="float32", attn_implementation="sdpa")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for a stock checkpoint: no coord tokens, padded embedding rows."""
    out = tmp_path_factory.mktemp("base")
    build_tiny_model(BUILTIN_SPECS["tiny-qwen3-vl"], out, coord_token_mode=None)
    return out


@pytest.fixture(scope="module")
def expanded_dir(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("expanded") / "ckpt"
    expand_vocab(base_dir, out)
    return out


def test_loading_a_checkpoint_without_coord_tokens_points_at_expand_vocab(base_dir: Path) -> None:
    with pytest.raises(CoordVocabError) as err:
        load_model_and_processor(_settings(base_dir))
    message = str(err.value)
    assert str(base_dir) in message
    assert "lacks 1000 of the 1000 coord tokens (first missing: <|coord_0|>)" in message
    assert "coordexp-train expand-vocab --src" in message


def test_loading_a_missing_directory_names_the_config_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.model: .* is not a checkpoint directory"):
        load_model_and_processor(_settings(tmp_path / "nowhere"))


def test_expanded_checkpoint_has_contiguous_coord_ids_after_the_old_vocab(
    base_dir: Path, expanded_dir: Path
) -> None:
    old_len = len(load_processor(base_dir).tokenizer)
    loaded = load_model_and_processor(_settings(expanded_dir))
    vocab = loaded.coord_vocab
    assert vocab.contiguous
    assert vocab.ids == tuple(range(old_len, old_len + 1000))
    tok = loaded.processor.tokenizer
    assert tok.convert_ids_to_tokens(list(vocab.ids)) == all_coord_tokens()
    rows = input_embedding(loaded.model).shape[0]
    assert rows % 64 == 0
    assert rows >= old_len + 1000
    assert loaded.model.config.text_config.vocab_size == rows
    recorded = json.loads((expanded_dir / COORD_VOCAB_FILE).read_text())
    assert recorded == {
        "num_bins": 1000,
        "contiguous": True,
        "first_id": old_len,
        "last_id": old_len + 999,
    }


def test_new_rows_follow_the_documented_rule_and_old_rows_are_kept(
    base_dir: Path, expanded_dir: Path
) -> None:
    base = AutoModelForImageTextToText.from_pretrained(str(base_dir))
    old_len = len(load_processor(base_dir).tokenizer)
    new = load_model_and_processor(_settings(expanded_dir)).model
    ids = list(range(old_len, old_len + 1000))
    for old_w, new_w in [
        (input_embedding(base), input_embedding(new)),
        (output_embedding(base), output_embedding(new)),
    ]:
        assert old_w is not None
        assert new_w is not None
        assert torch.equal(new_w[:old_len], old_w[:old_len])
        ref = old_w[:old_len].double()
        expected = ref.mean(0) + EXPAND_SCALE * ref.std(0) * coord_offsets(ref.shape[1])
        torch.testing.assert_close(new_w[ids].double(), expected, rtol=0, atol=1e-6)
        # neighbouring bins start closer than distant ones
        near = (new_w[ids[1]] - new_w[ids[0]]).norm()
        far = (new_w[ids[500]] - new_w[ids[0]]).norm()
        assert near < far


def test_coord_offsets_are_unit_rms_and_smooth() -> None:
    offsets = coord_offsets(64)
    assert offsets.shape == (1000, 64)
    assert abs(offsets.pow(2).mean().sqrt().item() - 1.0) < 0.05
    # the steepest dimension (8 half-cycles) moves at most √2·π·8/999 per bin
    assert (offsets[1:] - offsets[:-1]).abs().max() <= 2**0.5 * 3.1416 * 8 / 999


def test_expanded_checkpoint_runs_a_forward(expanded_dir: Path) -> None:
    loaded = load_model_and_processor(_settings(expanded_dir))
    tok = loaded.processor.tokenizer
    ids = tok('"<|coord_3|>", "<|coord_4|>"', return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = loaded.model(input_ids=ids).logits
    assert torch.isfinite(logits).all()


def test_expand_vocab_refuses_a_non_empty_destination(base_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ExpandVocabError, match="is not empty; give a new folder"):
        expand_vocab(base_dir, tmp_path)


def test_expand_vocab_refuses_a_tokenizer_that_already_has_coord_tokens(
    expanded_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExpandVocabError, match="already holds all 1000 coord tokens"):
        expand_vocab(expanded_dir, tmp_path / "twice")


def test_coord_token_mode_must_match_the_tokenizer(expanded_dir: Path) -> None:
    expected = r"registered as added tokens but custom\.coord_token_mode is 'special'"
    with pytest.raises(CoordVocabError, match=expected):
        load_model_and_processor(_settings(expanded_dir), coord_token_mode="special")


def test_special_mode_expansion_registers_special_tokens(base_dir: Path, tmp_path: Path) -> None:
    expand_vocab(base_dir, tmp_path / "special", coord_token_mode="special")
    loaded = load_model_and_processor(_settings(tmp_path / "special"), coord_token_mode="special")
    tok = loaded.processor.tokenizer
    assert tok.added_tokens_decoder[loaded.coord_vocab.first_id].special


def test_tampered_coord_record_is_refused(expanded_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(expanded_dir, copy)
    record = json.loads((copy / COORD_VOCAB_FILE).read_text())
    record["first_id"] += 1
    record["last_id"] += 1
    (copy / COORD_VOCAB_FILE).write_text(json.dumps(record))
    with pytest.raises(CoordVocabError, match="directory was modified after expand-vocab"):
        load_model_and_processor(_settings(copy))


def test_tied_embeddings_stay_tied_and_follow_the_rule(base_dir: Path, tmp_path: Path) -> None:
    tied = AutoModelForImageTextToText.from_pretrained(str(base_dir))
    tied.config.tie_word_embeddings = True
    tied.tie_weights()
    tied.save_pretrained(str(tmp_path / "tied"))
    load_processor(base_dir).save_pretrained(str(tmp_path / "tied"))
    expand_vocab(tmp_path / "tied", tmp_path / "expanded")
    model = load_model_and_processor(_settings(tmp_path / "expanded")).model
    embedding, head = input_embedding(model), output_embedding(model)
    assert head is not None
    assert head.data_ptr() == embedding.data_ptr()
    old_len = len(load_processor(base_dir).tokenizer)
    ref = input_embedding(tied)[:old_len].double()
    expected = ref.mean(0) + EXPAND_SCALE * ref.std(0) * coord_offsets(ref.shape[1])
    got = embedding[old_len : old_len + 1000].double()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_expand_vocab_refuses_a_source_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ExpandVocabError, match=r"--src .* is not a checkpoint folder"):
        expand_vocab(tmp_path / "nothing", tmp_path / "out")
