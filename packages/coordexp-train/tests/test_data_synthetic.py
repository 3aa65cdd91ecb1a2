"""The synthetic dataset: deterministic, valid records, truthful annotations, knobs honoured."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from coordexp_parse import read_records
from coordexp_train.data.synthetic import (
    BUILTIN_DATASETS,
    DEMO_SCENES,
    MANIFEST_FILE,
    ensure_builtin_dataset,
    resolve_records_path,
    write_synthetic_dataset,
)
from coordexp_train.data.synthetic_scene import PALETTES, SceneSpec, descriptions, draw_scene


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_writing_twice_gives_identical_bytes(tmp_path: Path) -> None:
    spec = SceneSpec()
    a = write_synthetic_dataset(tmp_path / "a", spec, num_train=6, num_val=3, seed=5)
    b = write_synthetic_dataset(tmp_path / "b", spec, num_train=6, num_val=3, seed=5)
    assert _tree_digest(a.root) == _tree_digest(b.root)
    assert len(a.train_jsonl.read_text().splitlines()) == 6
    assert len(a.val_jsonl.read_text().splitlines()) == 3


def test_records_follow_the_record_contract(tmp_path: Path) -> None:
    ds = write_synthetic_dataset(tmp_path, SceneSpec(), num_train=10, num_val=2)
    records, skipped = read_records(ds.train_jsonl)
    assert skipped == []
    assert len(records) == 10
    for record in records:
        assert (tmp_path / record.images[0]).is_file()
        assert {o.desc for o in record.objects} <= set(descriptions(SceneSpec()))


def test_train_and_val_images_differ(tmp_path: Path) -> None:
    ds = write_synthetic_dataset(tmp_path, SceneSpec(), num_train=1, num_val=1)
    train = (ds.root / "images/train_000000.png").read_bytes()
    assert train != (ds.root / "images/val_000000.png").read_bytes()


def test_an_existing_dataset_is_reused_and_a_different_one_refused(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, SceneSpec(), num_train=2, num_val=1)
    stamp = (tmp_path / MANIFEST_FILE).stat().st_mtime_ns
    write_synthetic_dataset(tmp_path, SceneSpec(), num_train=2, num_val=1)
    assert (tmp_path / MANIFEST_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="made with other settings"):
        write_synthetic_dataset(tmp_path, SceneSpec(), num_train=3, num_val=1)


def test_a_foreign_non_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"is not empty and holds no synthetic\.json"):
        write_synthetic_dataset(tmp_path, SceneSpec(), num_train=1, num_val=0)


def test_bad_knobs_are_reported_together() -> None:
    with pytest.raises(ValueError, match=r"min_shapes <= max_shapes.*palette must be one of"):
        SceneSpec(min_shapes=3, max_shapes=1, palette="neon")


def test_annotations_are_truthful_pixels_of_the_shape_colour() -> None:
    spec = SceneSpec(textures=("plain",), polygons=False)
    colours = PALETTES[spec.palette]
    for index in range(10):
        scene = draw_scene(spec, 3, index)
        pixels = np.asarray(scene.image)
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.points
            colour = colours[obj.desc.split()[0]]
            cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
            assert tuple(pixels[cy, cx]) == colour, obj
            if obj.desc.endswith(("square", "rectangle")):
                assert tuple(pixels[y1, x1]) == colour
                assert tuple(pixels[y2, x2]) == colour
                assert tuple(pixels[y1, x2]) == colour


def test_triangles_are_polygons_when_asked() -> None:
    spec = SceneSpec(shapes=("triangle",), polygons=True, min_shapes=2, max_shapes=2)
    objs = draw_scene(spec, 0, 0).objects
    assert objs
    assert all(o.kind == "poly" and len(o.points) == 6 for o in objs)


def test_zero_shape_images_are_possible() -> None:
    spec = SceneSpec(min_shapes=0, max_shapes=0)
    assert draw_scene(spec, 0, 0).objects == ()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    index=st.integers(0, 10_000),
    width=st.integers(32, 200),
    height=st.integers(32, 200),
)
def test_scenes_are_deterministic_in_bounds_and_apart(
    seed: int, index: int, width: int, height: int
) -> None:
    spec = SceneSpec(width=width, height=height, max_shapes=4)
    scene = draw_scene(spec, seed, index)
    again = draw_scene(spec, seed, index)
    assert scene.objects == again.objects
    assert scene.image.tobytes() == again.image.tobytes()
    assert scene.image.size == (width, height)
    boxes = []
    for obj in scene.objects:
        xs, ys = obj.points[0::2], obj.points[1::2]
        assert 0 <= min(xs) <= max(xs) <= width - 1
        assert 0 <= min(ys) <= max(ys) <= height - 1
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:  # max_overlap 0: shapes keep a gap of at least one pixel
            assert a[2] + 1 < b[0] or b[2] + 1 < a[0] or a[3] + 1 < b[1] or b[3] + 1 < a[1]


def test_image_is_rgb_png(tmp_path: Path) -> None:
    ds = write_synthetic_dataset(tmp_path, SceneSpec(width=64, height=48), num_train=1, num_val=0)
    record = json.loads(ds.train_jsonl.read_text())
    with Image.open(tmp_path / record["images"][0]) as im:
        assert im.format == "PNG"
        assert im.mode == "RGB"
        assert im.size == (64, 48)


def test_builtin_dataset_references_resolve_into_the_cache(tmp_path: Path) -> None:
    train = resolve_records_path("builtin:shapes-tiny/train", cache_dir=tmp_path)
    val = resolve_records_path("builtin:shapes-tiny/val", cache_dir=tmp_path)
    assert train.parent == val.parent
    assert train.parent.parent == tmp_path / "datasets"
    assert train.parent.name.startswith("shapes-tiny-")
    assert len(train.read_text().splitlines()) == BUILTIN_DATASETS["shapes-tiny"].num_train
    assert len(val.read_text().splitlines()) == BUILTIN_DATASETS["shapes-tiny"].num_val
    stamp = train.stat().st_mtime_ns
    assert resolve_records_path("builtin:shapes-tiny/train", cache_dir=tmp_path) == train
    assert train.stat().st_mtime_ns == stamp
    assert resolve_records_path("data/train.jsonl") == Path("data/train.jsonl")


def test_bad_builtin_dataset_references_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="builtin:<name>/train or builtin:<name>/val"):
        resolve_records_path("builtin:shapes-tiny", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown built-in dataset 'nope'"):
        resolve_records_path("builtin:nope/train", cache_dir=tmp_path)


_CROSS_PROCESS = """
import hashlib, json, sys
from pathlib import Path
from coordexp_train.data.packing import epoch_order, plan_packs
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
root = Path(sys.argv[1])
write_synthetic_dataset(root, SceneSpec(max_shapes=4), num_train=5, num_val=2, seed=9)
files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted(root.rglob("*")) if p.is_file()}
lengths = [7, 3, 9, 4, 4, 8, 1, 6]
order = epoch_order(len(lengths), seed=5, epoch=2)
plan = plan_packs(lengths, [f"s{i}" for i in range(8)], order, capacity=12)
print(json.dumps({"files": files, "order": order, "packs": plan.packs}))
"""


def test_dataset_and_pack_plans_are_identical_across_processes(tmp_path: Path) -> None:
    runs = []
    for hash_seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", _CROSS_PROCESS, str(tmp_path / hash_seed)],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out))
    assert runs[0] == runs[1]
    assert len(runs[0]["files"]) == 5 + 2 + 3  # images, two JSONL files, manifest


@pytest.mark.parametrize("module", ["synthetic", "synthetic_scene"])
def test_a_changed_generator_gets_a_new_cache_folder(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coordexp_train.data.synthetic as synthetic_module
    import coordexp_train.data.synthetic_scene as scene_module

    target = {"synthetic": synthetic_module, "synthetic_scene": scene_module}[module]
    before = ensure_builtin_dataset("shapes-tiny", cache_dir=tmp_path)
    edited = tmp_path / f"{module}.py"
    edited.write_text(Path(target.__file__ or "").read_text() + "\n# a changed generator\n")
    monkeypatch.setattr(target, "__file__", str(edited))
    after = ensure_builtin_dataset("shapes-tiny", cache_dir=tmp_path)
    assert after.root != before.root
    assert after.root.parent == before.root.parent
    assert (
        json.loads((after.root / "synthetic.json").read_text())["recipe_sha256"]
        != json.loads((before.root / "synthetic.json").read_text())["recipe_sha256"]
    )


def test_demo_dataset_is_the_documented_one() -> None:
    preset = BUILTIN_DATASETS["shapes-demo"]
    assert (preset.num_train, preset.num_val) == (2048, 64)
    assert preset.spec == DEMO_SCENES
    assert descriptions(DEMO_SCENES) == ["blue shape", "green shape", "red shape", "yellow shape"]
    scenes = [draw_scene(DEMO_SCENES, 0, i) for i in range(64)]
    assert {len(s.objects) for s in scenes} == {1, 2}
    assert all(o.kind == "bbox_2d" for s in scenes for o in s.objects)
    assert {o.desc for s in scenes for o in s.objects} == set(descriptions(DEMO_SCENES))


def test_kinds_are_named_only_when_asked() -> None:
    named = SceneSpec(shapes=("circle", "triangle"), palette="basic")
    unnamed = SceneSpec(shapes=("circle", "triangle"), palette="basic", name_kinds=False)
    assert len(descriptions(named)) == 8
    assert descriptions(unnamed) == ["blue shape", "green shape", "red shape", "yellow shape"]
    a, b = draw_scene(named, 5, 3), draw_scene(unnamed, 5, 3)
    assert a.image.tobytes() == b.image.tobytes()  # the same picture, only the names differ
    assert [o.desc.split()[0] for o in a.objects] == [o.desc.split()[0] for o in b.objects]
    assert all(o.desc.endswith((" circle", " triangle")) for o in a.objects)
    assert all(o.desc.endswith(" shape") for o in b.objects)
