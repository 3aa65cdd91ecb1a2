"""LoRA wrapping on the tiny Qwen3-VL: where adapters go, what trains, bad targets, rollouts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from coordexp_backends import DecodeParams, RolloutRequest
from coordexp_schema import TunerConfig, load_config
from coordexp_schema.config import TrainingConfig
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.model import LoadedModel, load_model_and_processor
from coordexp_train.model.embeddings import input_embedding, output_embedding
from coordexp_train.model.lora import LoraTargetError, build_lora_model, save_merged
from coordexp_train.model.trainable import count_trainable
from coordexp_train.param_groups import GroupName
from coordexp_train.settings import UnsupportedSetting, check_supported, group_settings
from coordexp_train.stage2.setup import build_backend, lora_engine_kwargs

DEFAULT_FROZEN: frozenset[GroupName] = frozenset({"vision_tower"})
ROLLOUT_CONFIG = """\
model: {model: builtin:tiny-qwen3-vl}
data: {train_jsonl: train.jsonl}
training: {output_dir: out}
custom: {trainer_variant: rollout_matching_sft}
tuner: {train_type: lora}
rollout_matching: {rollout_backend: hf, max_new_tokens: 12, decode_batch_size: 2}
"""
LLM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A fresh copy of the tiny model per test (LoRA wrapping modifies it in place)."""
    settings = SimpleNamespace(
        model="builtin:tiny-qwen3-vl", dtype="float32", attn_implementation="sdpa"
    )
    cache = tmp_path_factory.getbasetemp() / "coordexp-cache"
    return load_model_and_processor(settings, cache_dir=cache)


def _wrap(
    loaded: LoadedModel,
    frozen: frozenset[GroupName] = DEFAULT_FROZEN,
    **tuner: object,
) -> object:
    torch.manual_seed(0)
    config = TunerConfig(train_type="lora", **tuner)  # type: ignore[arg-type]
    return build_lora_model(loaded.model, config, loaded.coord_vocab.ids, frozen)


def _adapted(model: object) -> set[str]:
    names = (n for n, _ in model.named_parameters() if ".lora_A." in n)  # type: ignore[attr-defined]
    return {n.split(".lora_A.")[0].removeprefix("base_model.model.") for n in names}


def _rollout_config(tmp_path: Path, *overrides: str) -> TrainingConfig:
    """A LoRA ``rollout_matching_sft`` config (HF rollouts) with dotted overrides."""
    path = tmp_path / "lora.yaml"
    path.write_text(ROLLOUT_CONFIG)
    return load_config(path, list(overrides))


def test_default_targets_adapt_every_language_model_linear_and_nothing_else(
    fresh: LoadedModel,
) -> None:
    expected = {
        n
        for n, m in fresh.model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in LLM_TARGETS
    }
    assert len(expected) == 2 * 7  # two decoder layers
    model = _wrap(fresh, lora_rank=4, lora_alpha=8)
    assert _adapted(model) == expected
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}  # type: ignore[attr-defined]
    # only LoRA matrices and the coord rows of the (untied) embedding and LM head train
    assert all(".lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    rows = [n for n in trainable if "trainable_tokens_delta" in n]
    assert len(rows) == 2
    assert any("embed_tokens" in n for n in rows)
    assert any("lm_head" in n for n in rows)


def test_trainable_count_splits_lora_matrices_and_coord_rows(fresh: LoadedModel) -> None:
    total_before = sum(p.numel() for p in fresh.model.parameters())
    model = _wrap(fresh, lora_rank=4, lora_alpha=8, lora_target_modules=("q_proj",))
    count = count_trainable(model)  # type: ignore[arg-type]
    hidden = 128
    q_out = fresh.model.config.text_config.num_attention_heads * 64
    assert count.lora == 2 * (4 * hidden + q_out * 4)  # A (r x in) and B (out x r), 2 layers
    assert count.token_rows == 2 * 1000 * hidden  # embedding and LM head
    assert count.trainable == count.lora + count.token_rows == count.by_group["llm"]
    assert count.total == total_before + count.trainable
    line = count.describe()
    assert line.startswith(f"trainable parameters: {count.trainable:,} of {count.total:,} (")
    assert "vision_tower 0, aligner 0, llm " in line
    assert f"LoRA matrices {count.lora:,}, coord-token rows {count.token_rows:,}" in line


def test_freeze_vision_tower_leaves_a_shared_mlp_name_to_the_aligner(fresh: LoadedModel) -> None:
    model = _wrap(fresh, lora_target_modules=("linear_fc1", "linear_fc2"))
    adapted = _adapted(model)
    assert adapted
    assert all("visual.merger" in n or "visual.deepstack_merger_list" in n for n in adapted)
    # the same names in the vision tower's own blocks exist but stay plain
    assert any("visual.blocks.0.mlp.linear_fc1" in n for n, _ in fresh.model.named_modules())


def test_unfrozen_vision_tower_gets_adapters_on_its_blocks(fresh: LoadedModel) -> None:
    model = _wrap(fresh, frozenset(), lora_target_modules=("qkv", "q_proj"))
    adapted = _adapted(model)
    assert {n for n in adapted if "visual.blocks" in n} == {
        "model.visual.blocks.0.attn.qkv",
        "model.visual.blocks.1.attn.qkv",
    }
    assert len(adapted) == 4


def test_freeze_llm_keeps_coord_rows_and_language_model_frozen(fresh: LoadedModel) -> None:
    model = _wrap(fresh, frozenset({"vision_tower", "llm"}), lora_target_modules=("linear_fc1",))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]  # type: ignore[attr-defined]
    assert trainable
    assert all("merger" in n and ".lora_" in n for n in trainable)


def test_a_target_matching_no_module_names_the_config_path_and_the_choices(
    fresh: LoadedModel,
) -> None:
    with pytest.raises(LoraTargetError) as info:
        _wrap(fresh, lora_target_modules=("q_proj", "query_proj"))
    message = str(info.value)
    assert message.startswith(
        "tuner.lora_target_modules: 'query_proj' matches no module of the model"
    )
    assert "'q_proj'" in message  # the linear layer names the model offers
    assert "'qkv'" in message


def test_a_target_only_in_frozen_groups_names_the_freeze_flag(fresh: LoadedModel) -> None:
    with pytest.raises(LoraTargetError, match=r"'qkv' matches only modules of frozen groups "):
        _wrap(fresh, lora_target_modules=("qkv",))
    with pytest.raises(LoraTargetError, match=r"\(tuner\.freeze_vision_tower: true\)"):
        _wrap(fresh, lora_target_modules=("qkv",))


def test_a_target_that_is_not_a_layer_names_the_module_and_its_layers(fresh: LoadedModel) -> None:
    # "mlp" names the language model's MLP blocks, which are not linear layers
    with pytest.raises(LoraTargetError) as info:
        _wrap(fresh, lora_target_modules=("mlp",))
    assert str(info.value) == (
        "tuner.lora_target_modules: 'mlp' matches model.language_model.layers.0.mlp, a "
        "Qwen3VLTextMLP; LoRA adapts linear, embedding and convolution layers: name the "
        "layers inside it (e.g. ['down_proj', 'gate_proj', 'up_proj'])"
    )


def _perturb_adapters(model: object) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():  # type: ignore[attr-defined]
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def test_hf_rollouts_run_through_the_active_adapters(fresh: LoadedModel, tmp_path: Path) -> None:
    cfg = _rollout_config(tmp_path)
    model = _wrap(fresh, lora_rank=4)
    _perturb_adapters(model)
    backend = build_backend(cfg, dataclasses.replace(fresh, model=model))
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    messages = prompt_messages(PromptSpec())
    requests = [RolloutRequest(f"r{i}", messages, (im,)) for i, im in enumerate(images)]
    params = DecodeParams(max_new_tokens=12)

    with_adapters = [r.response_token_ids for r in backend.generate(requests, params)]
    with model.disable_adapter():  # type: ignore[attr-defined]
        base = [r.response_token_ids for r in backend.generate(requests, params)]
    assert with_adapters != base
    # the same answers as the merged plain model: the backend used the adapters
    save_merged(model, tmp_path / "merged")
    backend.sync_weights(model)  # now the unwrapped, merged model
    merged = [r.response_token_ids for r in backend.generate(requests, params)]
    assert merged == with_adapters


def test_merged_checkpoint_holds_base_plus_adapter_deltas_and_the_trained_coord_rows(
    fresh: LoadedModel, tmp_path: Path
) -> None:
    base = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    model = _wrap(fresh, lora_rank=4, lora_alpha=8, lora_target_modules=("q_proj",))
    _perturb_adapters(model)
    ids = list(fresh.coord_vocab.ids)
    with torch.no_grad():
        for name, param in model.named_parameters():  # type: ignore[attr-defined]
            if "trainable_tokens_delta" in name:
                param.add_(1.0)
    layer = model.base_model.model.model.language_model.layers[0].self_attn.q_proj  # type: ignore[attr-defined]
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * (8 / 4)
    save_merged(model, tmp_path / "merged")
    from safetensors.torch import load_file

    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    assert set(merged) == set(base)
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(merged[key], base[key] + delta)
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        changed = (merged[key] != base[key]).any(dim=1).nonzero().flatten().tolist()
        assert changed == ids, key
        torch.testing.assert_close(merged[key][ids], base[key][ids] + 1.0)
    moved = ("q_proj", "embed_tokens", "lm_head")
    untouched = [k for k in base if not any(m in k for m in moved)]
    assert all(torch.equal(merged[k], base[k]) for k in untouched)


def test_the_embedding_seen_through_the_peft_model_carries_the_trained_coord_rows(
    fresh: LoadedModel,
) -> None:
    model = _wrap(fresh, lora_target_modules=("q_proj",))
    with torch.no_grad():
        for name, param in model.named_parameters():  # type: ignore[attr-defined]
            if "trainable_tokens_delta" in name:
                param.fill_(3.0)
    ids = list(fresh.coord_vocab.ids)
    for weight in (input_embedding(model), output_embedding(model)):  # type: ignore[arg-type]
        assert weight is not None
        assert bool((weight[ids] == 3.0).all())
        assert not bool((weight[: ids[0]] == 3.0).any())


def test_vllm_engine_gets_the_smallest_lora_rank_it_accepts(
    fresh: LoadedModel, tmp_path: Path
) -> None:
    def engine(rank: int, enable: bool = True, train_type: str = "lora") -> dict[str, object]:
        cfg = _rollout_config(
            tmp_path,
            f"tuner.train_type={train_type}",
            f"tuner.lora_rank={rank}",
            "rollout_matching.rollout_backend=vllm",
            f"rollout_matching.vllm.enable_lora={str(enable).lower()}",
        )
        return lora_engine_kwargs(cfg, fresh.model)

    assert engine(4) == {"max_lora_rank": 8}
    assert engine(16) == {"max_lora_rank": 16}
    assert engine(17) == {"max_lora_rank": 32}
    assert engine(16, enable=False) == {}
    assert engine(16, train_type="full") == {}
    with pytest.raises(UnsupportedSetting, match=r"tuner\.lora_rank: 600 is above"):
        engine(600)


def test_adapters_outside_the_language_model_ask_vllm_for_tower_connector_lora(
    fresh: LoadedModel, tmp_path: Path
) -> None:
    cfg = _rollout_config(
        tmp_path,
        "rollout_matching.rollout_backend=vllm",
        "rollout_matching.vllm.enable_lora=true",
        "tuner.freeze_aligner=false",
    )
    model = _wrap(fresh, lora_target_modules=("q_proj", "linear_fc1"))
    assert lora_engine_kwargs(cfg, model) == {
        "max_lora_rank": 8,
        "enable_tower_connector_lora": True,
    }


def test_strict_adapter_sync_is_refused_at_config_time_when_coord_rows_train(
    tmp_path: Path,
) -> None:
    strict = [
        "rollout_matching.rollout_backend=vllm",
        "rollout_matching.vllm.enable_lora=true",
        "rollout_matching.vllm.sync.mode=adapter",
        "rollout_matching.vllm.sync.fallback_to_full=false",
    ]
    with pytest.raises(UnsupportedSetting, match=r"sync\.fallback_to_full: true"):
        check_supported(_rollout_config(tmp_path, *strict))
    # with the language model frozen no coord row trains: the adapter alone can be synced
    unfrozen_aligner = ["tuner.freeze_llm=true", "tuner.freeze_aligner=false"]
    check_supported(_rollout_config(tmp_path, *strict, *unfrozen_aligner))


REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.name != "base.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_config_is_accepted_by_the_trainers(path: Path) -> None:
    check_supported(load_config(path))


def test_the_shipped_lora_config_wraps_a_qwen3_vl_language_model(fresh: LoadedModel) -> None:
    cfg = load_config(REPO / "configs" / "stage1" / "qwen3vl_2b_lora.yaml")
    assert (cfg.tuner.train_type, cfg.tuner.lora_rank, cfg.tuner.lora_alpha) == ("lora", 16, 32)
    frozen = group_settings(cfg).frozen
    model = build_lora_model(fresh.model, cfg.tuner, fresh.coord_vocab.ids, frozen)
    assert len(_adapted(model)) == 2 * 7  # every projection of both decoder layers
    assert count_trainable(model).by_group["vision_tower"] == 0


def test_tied_embedding_and_lm_head_share_one_set_of_trained_coord_rows(
    fresh: LoadedModel, tmp_path: Path
) -> None:
    tied_dir = tmp_path / "tied"
    fresh.model.config.tie_word_embeddings = True
    fresh.model.tie_weights()
    fresh.model.save_pretrained(str(tied_dir))
    fresh.processor.save_pretrained(str(tied_dir))
    settings = SimpleNamespace(model=str(tied_dir), dtype="float32", attn_implementation="sdpa")
    tied = load_model_and_processor(settings)
    model = _wrap(tied, lora_target_modules=("q_proj",))
    rows = [p for n, p in model.named_parameters() if "trainable_tokens_delta" in n]  # type: ignore[attr-defined]
    assert [tuple(p.shape) for p in rows] == [(1000, 128)]
    with torch.no_grad():
        rows[0].fill_(2.0)
    ids = list(tied.coord_vocab.ids)
    head = output_embedding(model)  # type: ignore[arg-type]
    assert head is not None
    assert bool((head[ids] == 2.0).all())  # the LM head reads the trained rows too
    save_merged(model, tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "merged"))
    weight = input_embedding(merged)
    assert weight.data_ptr() == output_embedding(merged).data_ptr()  # type: ignore[union-attr]
    assert bool((weight[ids] == 2.0).all())
