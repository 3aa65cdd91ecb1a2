"""The built-in tiny Qwen3-VL: deterministic, cached by recipe, Qwen-shaped, coord-ready."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from coordexp_parse import all_coord_tokens
from coordexp_train.model import (
    BUILTIN_SPECS,
    COORD_VOCAB_FILE,
    build_tiny_model,
    ensure_builtin_model,
    load_model_and_processor,
)
from coordexp_train.model.coord_init import BUILTIN_SCALE, coord_offsets
from coordexp_train.model.embeddings import input_embedding, output_embedding
from coordexp_train.model.tiny import TEXT_HEAD_DIM, builtin_name, recipe_digest
from coordexp_train.model.tiny_tokenizer import tokenizer_corpus, train_tiny_tokenizer

SPEC = BUILTIN_SPECS["tiny-qwen3-vl"]


def _settings(model: str) -> SimpleNamespace:
    return SimpleNamespace(model=model, dtype="float32", attn_implementation="sdpa")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "coordexp-cache"


@pytest.fixture(scope="module")
def tiny_dir(cache_dir: Path) -> Path:
    return ensure_builtin_model("tiny-qwen3-vl", cache_dir=cache_dir)


def _digest_files(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.name not in {"coordexp_builtin.json"}
    }


def test_build_is_deterministic_and_leaves_the_global_rng_alone(
    tmp_path: Path, tiny_dir: Path
) -> None:
    state = torch.random.get_rng_state()
    build_tiny_model(SPEC, tmp_path / "again", name="tiny-qwen3-vl")
    assert torch.equal(torch.random.get_rng_state(), state)
    a, b = (
        load_file(tiny_dir / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny_dir / "tokenizer.json").read_bytes() == (
        tmp_path / "again" / "tokenizer.json"
    ).read_bytes()


def test_build_in_another_process_gives_identical_files(tmp_path: Path, tiny_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from coordexp_train.model import "
        "BUILTIN_SPECS, build_tiny_model; build_tiny_model(BUILTIN_SPECS['tiny-qwen3-vl'], "
        "Path(sys.argv[1]), name='tiny-qwen3-vl')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub")], check=True, env=env)
    assert _digest_files(tmp_path / "sub") == _digest_files(tiny_dir)


def test_seed_changes_the_weights(tmp_path: Path, tiny_dir: Path) -> None:
    build_tiny_model(dataclasses.replace(SPEC, seed=1), tmp_path / "seed1")
    a, b = (
        load_file(tiny_dir / "model.safetensors"),
        load_file(tmp_path / "seed1" / "model.safetensors"),
    )
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])


def test_cache_is_reused_and_keyed_by_the_recipe(cache_dir: Path, tiny_dir: Path) -> None:
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_builtin_model("tiny-qwen3-vl", cache_dir=cache_dir) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp
    digest = recipe_digest(SPEC)
    assert tiny_dir.name == f"tiny-qwen3-vl-{digest[:16]}"
    assert recipe_digest(dataclasses.replace(SPEC, seed=7)) != digest
    assert recipe_digest(SPEC, "special") != digest
    special = ensure_builtin_model("tiny-qwen3-vl", cache_dir=cache_dir, coord_token_mode="special")
    assert special != tiny_dir
    recorded = json.loads((tiny_dir / "coordexp_builtin.json").read_text())
    assert recorded["recipe_sha256"] == digest


def test_builtin_names_are_checked() -> None:
    assert builtin_name("/models/qwen") is None
    assert builtin_name("builtin:tiny-qwen3-vl") == "tiny-qwen3-vl"
    with pytest.raises(
        ValueError, match="unknown built-in model 'builtin:huge'; known: builtin:tiny"
    ):
        builtin_name("builtin:huge")


def test_config_is_qwen3_vl_shaped_with_local_token_ids(cache_dir: Path) -> None:
    loaded = load_model_and_processor(_settings("builtin:tiny-qwen3-vl"), cache_dir=cache_dir)
    cfg, tok = loaded.model.config, loaded.processor.tokenizer
    text = cfg.text_config
    assert text.head_dim == TEXT_HEAD_DIM
    assert sum(text.rope_parameters["mrope_section"]) == TEXT_HEAD_DIM // 2
    assert text.vocab_size % 64 == 0
    assert text.vocab_size >= len(tok)
    for attr, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]:
        assert getattr(cfg, attr) == tok.convert_tokens_to_ids(token)
    gen = loaded.model.generation_config
    assert gen.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    assert gen.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert loaded.coord_vocab.contiguous
    assert loaded.coord_vocab.first_id == tok.convert_tokens_to_ids("<|coord_0|>")
    assert json.loads((loaded.directory / COORD_VOCAB_FILE).read_text())["first_id"] == (
        loaded.coord_vocab.first_id
    )


def test_coord_tokens_are_single_ids_and_survive_decoding() -> None:
    tok = train_tiny_tokenizer(tokenizer_corpus(), bpe_vocab_size=SPEC.bpe_vocab_size)
    text = '{"object_1": {"desc": "red square", "bbox_2d": ["<|coord_0|>", "<|coord_999|>"]}}'
    ids = tok.encode(text, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(ids)
    assert "<|coord_0|>" in pieces
    assert "<|coord_999|>" in pieces
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (
        tok.decode([*ids, tok.convert_tokens_to_ids("<|im_end|>")], skip_special_tokens=True)
        == text
    )
    coord_ids = tok.convert_tokens_to_ids(all_coord_tokens())
    assert coord_ids == list(range(coord_ids[0], coord_ids[0] + 1000))


def test_special_coord_mode_drops_coords_from_skip_special_decode() -> None:
    tok = train_tiny_tokenizer(
        tokenizer_corpus(), bpe_vocab_size=SPEC.bpe_vocab_size, coord_token_mode="special"
    )
    ids = tok.encode('["<|coord_5|>"]', add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=False) == '["<|coord_5|>"]'
    assert tok.decode(ids, skip_special_tokens=True) == '[""]'


def test_tiny_model_runs_a_forward_with_an_image(cache_dir: Path) -> None:
    from PIL import Image

    loaded = load_model_and_processor(_settings("builtin:tiny-qwen3-vl"), cache_dir=cache_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = loaded.processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    image = Image.new("RGB", (128, 96), (120, 30, 30))
    enc = loaded.processor(text=[text], images=[image], return_tensors="pt")
    assert enc["image_grid_thw"].tolist() == [[1, 6, 8]]
    with torch.no_grad():
        out = loaded.model(**enc)
    assert out.logits.shape == (
        1,
        enc["input_ids"].shape[1],
        loaded.model.config.text_config.vocab_size,
    )
    assert torch.isfinite(out.logits).all()


def test_builtin_coord_rows_follow_the_smooth_rule(cache_dir: Path) -> None:
    loaded = load_model_and_processor(_settings("builtin:tiny-qwen3-vl"), cache_dir=cache_dir)
    ids = list(loaded.coord_vocab.ids)
    for weight in (input_embedding(loaded.model), output_embedding(loaded.model)):
        assert weight is not None
        ref = weight[: ids[0]].double()
        expected = ref.mean(0) + BUILTIN_SCALE * ref.std(0) * coord_offsets(ref.shape[1])
        torch.testing.assert_close(weight[ids].double(), expected, rtol=0, atol=1e-6)
