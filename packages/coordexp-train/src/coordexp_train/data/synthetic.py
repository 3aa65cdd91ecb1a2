"""The synthetic detection dataset: PNG images of coloured shapes plus JSONL records.

Layout written by :func:`write_synthetic_dataset` into ``out_dir``::

    train.jsonl, val.jsonl          one record per image (coordexp-parse record contract)
    images/train_000000.png, …      the images (paths in the records are relative)
    synthetic.json                  the manifest: spec, seed, counts, recipe digest

Records store pixel coordinates with inclusive ends (a box's x2 is its last pixel
column), so the norm1000 conversion maps a shape touching the right edge to bin 999.
Every record is validated with :func:`coordexp_parse.validate_record` before it is
written. Train image i and val image i come from different random streams (see
:mod:`coordexp_train.data.synthetic_scene`), and the output is byte-identical for the same
spec, seed and counts. The manifest's recipe digest covers the spec, seed, counts and the
source of this module and of the scene drawer, so a changed generator never reuses a
dataset written by an older one (the cache folder is named by the digest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordexp_parse import validate_record
from coordexp_train.data import synthetic_scene
from coordexp_train.data.cache import cached_build, default_cache_dir
from coordexp_train.data.synthetic_scene import SceneSpec, draw_scene

MANIFEST_FILE = "synthetic.json"
BUILTIN_PREFIX = "builtin:"
SPLITS = {"train": 0, "val": 1}


@dataclass(frozen=True, slots=True)
class SyntheticDataset:
    """Where a written synthetic dataset lives.

    Attributes:
        root: the dataset folder.
        train_jsonl: training records.
        val_jsonl: validation records.
    """

    root: Path
    train_jsonl: Path
    val_jsonl: Path


def _manifest(spec: SceneSpec, seed: int, num_train: int, num_val: int) -> dict[str, Any]:
    body = {
        "spec": dataclasses.asdict(spec),
        "seed": seed,
        "counts": {"train": num_train, "val": num_val},
        "generator": [
            Path(m.__file__ or "").read_text() for m in (synthetic_scene, sys.modules[__name__])
        ],
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {
        "spec": body["spec"],
        "seed": seed,
        "counts": body["counts"],
        "recipe_sha256": digest,
    }


def scene_record(spec: SceneSpec, seed: int, split: str, index: int) -> tuple[dict[str, Any], Any]:
    """The record (image path relative to the dataset root) and PIL image of one scene."""
    scene = draw_scene(spec, seed, index, stream=SPLITS[split])
    objects = [{"desc": o.desc, o.kind: list(o.points)} for o in scene.objects]
    record = {
        "images": [f"images/{split}_{index:06d}.png"],
        "width": spec.width,
        "height": spec.height,
        "objects": objects,
    }
    return record, scene.image


def write_synthetic_dataset(
    out_dir: Path,
    spec: SceneSpec,
    *,
    num_train: int,
    num_val: int,
    seed: int = 0,
) -> SyntheticDataset:
    """Write the dataset into ``out_dir``, or reuse it when it is already there.

    Args:
        out_dir: the dataset folder (created if missing).
        spec: difficulty knobs (see :class:`~coordexp_train.data.synthetic_scene.SceneSpec`).
        num_train: training images.
        num_val: validation images.
        seed: dataset seed.

    Returns:
        The paths of the dataset.

    Raises:
        FileExistsError: ``out_dir`` holds a different synthetic dataset or other files;
            the message says to delete it or choose another folder.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got train={num_train}, val={num_val}")
    manifest = _manifest(spec, seed, num_train, num_val)
    paths = SyntheticDataset(out_dir, out_dir / "train.jsonl", out_dir / "val.jsonl")
    manifest_path = out_dir / MANIFEST_FILE
    if manifest_path.exists():
        found = json.loads(manifest_path.read_text())
        if found.get("recipe_sha256") == manifest["recipe_sha256"]:
            return paths
        raise FileExistsError(
            f"{out_dir} holds a synthetic dataset made with other settings (its "
            f"{MANIFEST_FILE} differs); delete the folder or choose another one"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} is not empty and holds no {MANIFEST_FILE}; choose an empty folder"
        )
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val)):
        lines = []
        for index in range(count):
            record, image = scene_record(spec, seed, split, index)
            validate_record(record, source=f"synthetic {split}", line=index + 1)
            image.save(out_dir / record["images"][0], format="PNG")
            lines.append(json.dumps(record) + "\n")
        (out_dir / f"{split}.jsonl").write_text("".join(lines))
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


@dataclass(frozen=True, slots=True)
class SyntheticPreset:
    """A named synthetic dataset (``data.train_jsonl: builtin:<name>/train``)."""

    spec: SceneSpec
    num_train: int
    num_val: int
    seed: int = 0


#: The CPU demo's scenes: 128×128 images (16 visual tokens of 32×32 pixels), one or two
#: shapes of 45–70 pixels (squares, circles, triangles; boxes only) on plain or noisy
#: backgrounds, described by colour (``"red shape"``: four categories); about a third of
#: the images hold two shapes. Sized so that the tiny model learns to find and name them
#: within minutes of CPU training; docs/demo.md says what was measured with smaller
#: shapes and other settings.
DEMO_SCENES = SceneSpec(
    min_shapes=1,
    max_shapes=2,
    shapes=("square", "circle", "triangle"),
    textures=("plain", "noise"),
    min_size=0.35,
    max_size=0.55,
    polygons=False,
    name_kinds=False,
)

#: Named datasets: ``shapes-demo`` is the CPU demo's (:data:`DEMO_SCENES`, 2048 + 64
#: images); ``shapes-tiny`` is a 16-image smoke set.
BUILTIN_DATASETS: dict[str, SyntheticPreset] = {
    "shapes-demo": SyntheticPreset(DEMO_SCENES, num_train=2048, num_val=64),
    "shapes-tiny": SyntheticPreset(SceneSpec(width=64, height=64), num_train=16, num_val=4),
}


def ensure_builtin_dataset(name: str, *, cache_dir: Path | None = None) -> SyntheticDataset:
    """Write built-in dataset ``name`` into the cache on first use and return its paths.

    The folder is ``<cache>/datasets/<name>-<digest>`` (see :mod:`coordexp_train.data.cache`).

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"unknown built-in dataset {name!r}; known: {sorted(BUILTIN_DATASETS)}")
    preset = BUILTIN_DATASETS[name]
    digest = _manifest(preset.spec, preset.seed, preset.num_train, preset.num_val)["recipe_sha256"]
    folder = (cache_dir or default_cache_dir()) / "datasets" / f"{name}-{digest[:16]}"
    cached_build(
        folder,
        lambda out: write_synthetic_dataset(
            out, preset.spec, num_train=preset.num_train, num_val=preset.num_val, seed=preset.seed
        ),
    )
    return SyntheticDataset(folder, folder / "train.jsonl", folder / "val.jsonl")


def resolve_records_path(ref: str, *, cache_dir: Path | None = None) -> Path:
    """The JSONL file a ``data.train_jsonl`` / ``data.val_jsonl`` value names.

    ``builtin:<name>/<split>`` (split ``train`` or ``val``) writes the built-in dataset on
    first use and returns that split's file; anything else is a path, returned as is.

    Raises:
        ValueError: a ``builtin:`` reference with an unknown name or split.
    """
    if not ref.startswith(BUILTIN_PREFIX):
        return Path(ref).expanduser()
    name, _, split = ref[len(BUILTIN_PREFIX) :].partition("/")
    if split not in SPLITS:
        raise ValueError(
            f"{ref!r}: a built-in dataset reference is builtin:<name>/train or "
            f"builtin:<name>/val (known names: {sorted(BUILTIN_DATASETS)})"
        )
    dataset = ensure_builtin_dataset(name, cache_dir=cache_dir)
    return dataset.train_jsonl if split == "train" else dataset.val_jsonl
