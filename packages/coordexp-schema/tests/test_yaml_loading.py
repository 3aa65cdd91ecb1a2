"""``load_config``: YAML syntax, locations, ``extends`` and dotted overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordexp_schema import ConfigError, load_config
from coordexp_schema.dump import to_yaml

MINIMAL = """\
model: {model: builtin:tiny-qwen3-vl}
data: {train_jsonl: train.jsonl}
training: {output_dir: out}
custom: {trainer_variant: stage1_sft}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


def test_minimal_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "c.yaml", MINIMAL))
    assert cfg.model.model == "builtin:tiny-qwen3-vl"
    assert cfg.rollout_matching is None


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL + "global_max_length: 64\n")
    cfg = load_config(path, ["training.learning_rate=1e-5", "custom.gate_weight=2E+0"])
    assert cfg.training.learning_rate == 1e-5
    assert cfg.custom.gate_weight == 2.0


def test_strings_that_look_like_numbers_survive_a_yaml_dump(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL)
    cfg = load_config(path, ["training.output_dir='1e5'", "data.train_jsonl='2E+3'"])
    assert cfg.training.output_dir == "1e5"
    dumped = write(tmp_path, "dumped.yaml", to_yaml(cfg))
    assert load_config(dumped) == cfg


def test_schema_issues_point_at_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL.replace("out}", "out, lr: 1}"))
    (issue,) = error_of(path).issues
    assert issue.path == "training.lr"
    assert issue.location == f"{path}:3:29"


def test_syntax_error_reports_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL + "debug: {log_level: info\n")
    error = error_of(path)
    (issue,) = error.issues
    assert issue.message.startswith("YAML syntax error:")
    assert issue.location is not None
    assert issue.location.startswith(f"{path}:6:")
    assert str(path) in str(error)


def test_duplicate_keys_are_errors_not_overwrites(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL + "training: {output_dir: other}\n")
    (issue,) = error_of(path).issues
    assert issue.path == "training"
    assert issue.message == f"duplicate key (first written at {path}:3:1)"
    assert issue.location == f"{path}:5:1"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "- a\n- b\n")
    assert (
        error_of(path).issues[0].message
        == "a config file must hold a mapping at the top, got a list"
    )


def test_missing_file_is_named(tmp_path: Path) -> None:
    (issue,) = error_of(tmp_path / "nope.yaml").issues
    assert issue.message == f"config file {tmp_path / 'nope.yaml'} does not exist"


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    base = MINIMAL.replace("out}", "out, report_to: [jsonl, tensorboard], seed: 1}")
    write(tmp_path, "base/b.yaml", base)
    path = write(
        tmp_path, "run/c.yaml", "extends: ../base/b.yaml\ntraining: {report_to: [jsonl]}\n"
    )
    cfg = load_config(path)
    assert cfg.training.report_to == ("jsonl",)
    assert cfg.training.seed == 1
    assert cfg.training.output_dir == "out"


def test_extends_list_later_wins(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL + "global_max_length: 100\n")
    write(tmp_path, "b.yaml", "global_max_length: 200\ntraining: {seed: 7}\n")
    path = write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\ntraining: {seed: 9}\n")
    cfg = load_config(path)
    assert cfg.global_max_length == 200
    assert cfg.training.seed == 9


def test_null_over_a_base_section_removes_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        MINIMAL.replace("stage1_sft", "rollout_matching_sft")
        + "rollout_matching: {decode_batch_size: 2}\n",
    )
    path = write(
        tmp_path,
        "c.yaml",
        "extends: a.yaml\ncustom: {trainer_variant: stage1_sft}\nrollout_matching: null\n",
    )
    assert load_config(path).rollout_matching is None


def test_extends_cycle_is_reported_with_the_chain(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "extends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\n")
    (issue,) = error_of(a).issues
    assert issue.message == f"extends cycle: {a.resolve()} -> {b.resolve()} -> {a.resolve()}"
    assert issue.location == f"{b}:1:1"


def test_missing_base_names_the_file_that_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "# comment\nextends: gone.yaml\n")
    (issue,) = error_of(path).issues
    assert issue.path == "extends"
    assert issue.message == f"base config {tmp_path / 'gone.yaml'} does not exist"
    assert issue.location == f"{path}:2:1"


def test_extends_must_be_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "extends: {a: 1}\n")
    assert error_of(path).issues[0].message == "expected a file path or a list of file paths"


def test_issue_location_comes_from_the_file_that_wrote_the_key(tmp_path: Path) -> None:
    base = write(tmp_path, "a.yaml", MINIMAL + "debug: {log_levl: info}\n")
    path = write(tmp_path, "c.yaml", "extends: a.yaml\n")
    (issue,) = error_of(path).issues
    assert issue.location == f"{base}:5:9"


def test_overrides_are_validated_by_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", MINIMAL)
    error = error_of(path, ("training.learning_rat=1e-5", "training.seed=abc"))
    found = {i.path: (i.message, i.location) for i in error.issues}
    assert found["training.learning_rat"][0].endswith("did you mean 'learning_rate'?")
    assert found["training.learning_rat"][1] == "override 'training.learning_rat=1e-5'"
    assert found["training.seed"] == (
        "expected int, got string 'abc'",
        "override 'training.seed=abc'",
    )


def test_overrides_create_sections_and_index_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        MINIMAL.replace("stage1_sft", "rollout_matching_sft")
        + "rollout_matching:\n  rollout_backend: vllm\n  vllm:\n    mode: server\n"
        "    server:\n      servers: [{base_url: 'http://a:1', group_port: 2}]\n",
    )
    cfg = load_config(
        path,
        [
            "rollout_matching.vllm.server.servers[0].base_url=http://b:8000",
            "stage2_ab.schedule.b_ratio=0.25",
            "custom.trainer_variant=stage2_ab_training",
        ],
    )
    assert cfg.rollout_matching is not None
    assert cfg.rollout_matching.vllm.server.servers[0].base_url == "http://b:8000"
    assert cfg.stage2_ab is not None
    assert cfg.stage2_ab.schedule.b_ratio == 0.25


@pytest.mark.parametrize(
    ("override", "path", "message"),
    [
        ("training.seed", "", "expected key.path=value"),
        (
            "training..seed=1",
            "training..seed",
            "'training..seed' is not a dotted key path like training.learning_rate",
        ),
        (
            "training.report_to[3]=jsonl",
            "training.report_to[3]",
            "training.report_to has no item [3] (it has 0); edit the file to add items",
        ),
        (
            "training.output_dir.x=1",
            "training.output_dir.x",
            "training.output_dir is not a mapping, so it has no key 'x'",
        ),
    ],
)
def test_malformed_overrides_fail(tmp_path: Path, override: str, path: str, message: str) -> None:
    cfg_path = write(tmp_path, "c.yaml", MINIMAL)
    (issue,) = error_of(cfg_path, (override,)).issues
    assert (issue.path, issue.message, issue.location) == (path, message, f"override {override!r}")
