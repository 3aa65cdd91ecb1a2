"""The sync plan (``rollout_matching.vllm.sync``) and the weights a sync sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from coordexp_backends import RolloutError
from coordexp_backends.vllm_sync import write_checkpoint
from coordexp_backends.weights import EngineLoRA, SyncDecision, SyncPlan, named_weights

NO_LORA = EngineLoRA(enabled=False, max_rank=0)


@pytest.mark.parametrize("mode", ["full", "auto"])
def test_full_and_auto_send_a_plain_model(mode: str, model: Any) -> None:
    decision = SyncPlan(mode=mode).decide(model, NO_LORA)  # type: ignore[arg-type]
    assert decision == SyncDecision("full", f"sync.mode={mode}, plain model")


def test_adapter_mode_falls_back_to_full_for_a_plain_model_only_when_allowed(model: Any) -> None:
    assert SyncPlan(mode="adapter", fallback_to_full=True).decide(model, NO_LORA).path == "full"
    with pytest.raises(RolloutError) as info:
        SyncPlan(mode="adapter", fallback_to_full=False).decide(model, NO_LORA)
    assert str(info.value).startswith(
        "rollout_matching.vllm.sync.mode=adapter: the LoRA adapter cannot be synced: the "
        "model is not a PEFT (LoRA) model. Fix that, set "
        "rollout_matching.vllm.sync.fallback_to_full: true"
    )


def test_named_weights_are_the_checkpoint_state_dict(model: Any) -> None:
    pairs = dict(named_weights(model))
    assert pairs.keys() == model.state_dict().keys()
    assert "lm_head.weight" in pairs
    assert all(not t.requires_grad for t in pairs.values())
    assert torch.equal(pairs["model.norm.weight"], model.model.norm.weight)


def test_a_written_checkpoint_holds_every_weight_and_replaces_earlier_files(
    model: Any, tmp_path: Path
) -> None:
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    path = write_checkpoint(named_weights(model), tmp_path)
    assert path == tmp_path / "model.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    written = load_file(path)
    state = model.state_dict()
    assert written.keys() == state.keys()
    assert all(torch.equal(written[k], state[k]) for k in state)


def test_a_written_checkpoint_leaves_out_a_tied_tensor_and_copies_other_shared_views(
    model: Any, tmp_path: Path
) -> None:
    config = model.config
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    tied = type(model)(config)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    rows = tied.model.embed_tokens.weight.detach()
    pairs = [*named_weights(tied), ("extra.head_rows", rows[:4])]  # a view into the embedding
    written = load_file(write_checkpoint(pairs, tmp_path))
    assert "lm_head.weight" not in written  # tied: vLLM loads it from the embedding
    assert torch.equal(written["model.embed_tokens.weight"], rows)
    assert torch.equal(written["extra.head_rows"], rows[:4])
    assert written.keys() == {n for n, _ in pairs} - {"lm_head.weight"}
