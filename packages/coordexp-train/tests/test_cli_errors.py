"""Bad input to `coordexp-train`: each fails with a message that says what to change."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordexp_train.cli import main
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.metrics_log import read_metrics
from coordexp_train.model import BUILTIN_SPECS, build_tiny_model

BASE = {
    "model": {"model": "builtin:tiny-qwen3-vl", "dtype": "float32"},
    "template": {"max_pixels": 16384},
    "training": {"max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1},
    "custom": {"trainer_variant": "stage1_sft"},
    "global_max_length": 1024,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("cli")
    write_synthetic_dataset(base / "data", SceneSpec(), num_train=4, num_val=0, seed=5)
    old = os.environ.get("COORDEXP_CACHE_DIR")
    os.environ["COORDEXP_CACHE_DIR"] = str(base / "cache")
    yield base
    if old is None:
        del os.environ["COORDEXP_CACHE_DIR"]
    else:
        os.environ["COORDEXP_CACHE_DIR"] = old


def _write(root: Path, name: str, **changes: object) -> Path:
    cfg = json.loads(json.dumps(BASE))
    cfg["data"] = {"train_jsonl": str(root / "data" / "train.jsonl")}
    cfg["training"]["output_dir"] = str(root / name)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _run(path: Path, *overrides: str) -> int:
    args = ["--config", str(path)]
    for o in overrides:
        args += ["--override", o]
    return main(args)


def test_unknown_key_fails_with_the_schema_error_before_anything_is_built(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = Path(os.environ["COORDEXP_CACHE_DIR"])
    assert not cache.exists()
    path = _write(root, "unknown", training__learning_rat=1e-4)
    assert _run(path) == 2
    err = capsys.readouterr().err
    assert "Unknown training keys: ['learning_rat']" in err
    assert "learning_rate" in err  # the did-you-mean hint
    assert not (root / "unknown").exists()
    assert not cache.exists()  # no model was built


def test_unknown_override_key_fails_the_same_way(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(_write(root, "override"), "custom.gate_wieght=2") == 2
    assert "custom.gate_wieght" in capsys.readouterr().err


def test_missing_config_file_is_reported(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(root / "nope.yaml") == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_a_lora_target_the_model_lacks_names_the_config_key(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(root, "lora", tuner__train_type="lora", tuner__lora_target_modules=["qproj"])
    assert _run(path) == 1
    err = capsys.readouterr().err
    assert "coordexp-train: error: tuner.lora_target_modules: 'qproj' matches no module" in err
    assert not (root / "lora" / "final").exists()


def test_missing_training_file_names_the_config_key(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(root, "missing", data__train_jsonl=str(root / "absent.jsonl"))
    assert _run(path) == 1
    err = capsys.readouterr().err
    assert "data.train_jsonl" in err
    assert "absent.jsonl" in err


def test_effective_batch_not_a_multiple_of_the_device_batch_is_a_config_error(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _run(
            _write(root, "ebs"),
            "training.effective_batch_size=6",
            "training.per_device_train_batch_size=4",
        )
        == 2
    )
    assert "effective_batch_size" in capsys.readouterr().err


def test_model_directory_without_config_is_refused(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(_write(root, "nomodel", model__model=str(root / "data"))) == 1
    assert "model.model" in capsys.readouterr().err


def test_model_without_coord_tokens_points_at_expand_vocab_which_fixes_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stock = root / "stock"
    build_tiny_model(BUILTIN_SPECS["tiny-qwen3-vl"], stock, coord_token_mode=None)
    assert _run(_write(root, "stock", model__model=str(stock))) == 1
    assert "coordexp-train expand-vocab" in capsys.readouterr().err

    expanded = root / "expanded"
    assert main(["expand-vocab", "--src", str(stock), "--dst", str(expanded)]) == 0
    assert f"set model.model: {expanded}" in capsys.readouterr().out
    assert _run(_write(root, "expanded", model__model=str(expanded))) == 0
    assert "Training finished." in capsys.readouterr().out

    # a second expansion into the same (now non-empty) folder is refused
    assert main(["expand-vocab", "--src", str(stock), "--dst", str(expanded)]) == 1
    assert str(expanded) in capsys.readouterr().err


def test_undecodable_image_names_the_record(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = root / "broken"
    broken.mkdir()
    records = (root / "data" / "train.jsonl").read_text().splitlines()
    first = json.loads(records[0])
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    first["images"] = ["bad.png"]
    (broken / "train.jsonl").write_text(json.dumps(first) + "\n")
    assert _run(_write(root, "broken", data__train_jsonl=str(broken / "train.jsonl"))) == 1
    err = capsys.readouterr().err
    assert "train.jsonl:1" in err
    assert "bad.png" in err


def test_sequence_longer_than_global_max_length_is_an_error_naming_the_record(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(_write(root, "long", global_max_length=32)) == 1
    err = capsys.readouterr().err
    assert "train.jsonl:1" in err
    assert "global_max_length" in err


def test_records_with_zero_objects_train(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = root / "empty"
    write_synthetic_dataset(
        empty, SceneSpec(min_shapes=0, max_shapes=0), num_train=2, num_val=0, seed=1
    )
    assert _run(_write(root, "empty", data__train_jsonl=str(empty / "train.jsonl"))) == 0
    assert "Training finished." in capsys.readouterr().out
    logged = [r for r in read_metrics(root / "empty" / "metrics.jsonl") if "loss" in r]
    assert logged[0]["soft_ce"] == 0.0  # no coord position: coord terms are exact zeros
    assert "gate" not in logged[0]
    assert logged[0]["token_ce"] > 0  # the `{}` answer is still supervised


def test_on_invalid_skip_trains_on_the_rest_and_reports_what_was_left_out(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = root / "mixed"
    mixed.mkdir()
    lines = (root / "data" / "train.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    (mixed / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    bad["images"] = ["bad.png"]
    good = []
    for line in lines[1:]:
        record = json.loads(line)
        record["images"] = [str(root / "data" / record["images"][0])]
        good.append(json.dumps(record))
    (mixed / "train.jsonl").write_text("\n".join([json.dumps(bad), *good]) + "\n")
    path = _write(
        root, "skip", data__train_jsonl=str(mixed / "train.jsonl"), data__on_invalid="skip"
    )
    assert _run(path) == 0
    captured = capsys.readouterr()
    assert f"({len(good)} samples)" in captured.out
    assert "train: skipped 1 invalid samples (undecodable_image: 1)" in captured.out
    assert "train.jsonl:1" in captured.out
