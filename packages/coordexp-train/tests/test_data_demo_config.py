"""The demo config drives the data half end to end: built-in model and data, packed batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coordexp_schema import load_config
from coordexp_train.data import collate_rows
from coordexp_train.data.from_config import (
    datasets_from_config,
    encoder_from_config,
    pack_plan_from_config,
)
from coordexp_train.model import load_model_and_processor

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo" / "stage1_tiny.yaml"


def test_demo_config_builds_model_data_and_a_packed_training_batch(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cache = tmp_path_factory.getbasetemp() / "coordexp-cache"
    config = load_config(DEMO, ["data.train_sample_limit=24", "data.val_sample_limit=4"])
    loaded = load_model_and_processor(
        config.model, coord_token_mode=config.custom.coord_token_mode, cache_dir=cache
    )
    encoder = encoder_from_config(config, loaded.processor)
    splits = datasets_from_config(config, encoder, cache_dir=cache)
    assert len(splits.train) == 24
    assert splits.val is not None
    assert len(splits.val) == 4
    assert max(splits.train.lengths) <= config.global_max_length
    plan = pack_plan_from_config(config, splits.train, epoch=0)
    assert plan.capacity == config.training.packing_length
    assert sorted(i for p in plan.packs for i in p) == list(range(24))
    rows = [[splits.train[i] for i in plan.packs[0]]]
    batch = collate_rows(rows, pad_token_id=loaded.processor.tokenizer.pad_token_id)
    assert len(batch.samples) == len(plan.packs[0]) > 1
    loaded.model.train()
    logits = loaded.model(**batch.model_inputs()).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert plan != pack_plan_from_config(config, splits.train, epoch=1)

    # training.packing_drop_last decides the fate of the epoch's under-filled last packs
    limits = ["data.train_sample_limit=24", "training.packing_min_fill_ratio=0.99"]
    keeping = pack_plan_from_config(load_config(DEMO, limits), splits.train, epoch=0)
    assert keeping.dropped == ()
    assert sorted(i for p in keeping.packs for i in p) == list(range(24))
    dropping_cfg = load_config(DEMO, [*limits, "training.packing_drop_last=true"])
    dropping = pack_plan_from_config(dropping_cfg, splits.train, epoch=0)
    assert dropping.dropped
    assert sorted([*dropping.dropped, *(i for p in dropping.packs for i in p)]) == list(range(24))
