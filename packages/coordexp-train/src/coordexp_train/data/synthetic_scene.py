"""Drawing one synthetic scene: coloured shapes on a textured background.

A scene is a pure function of ``(spec, seed, stream, index)``: it draws from its own
random generator ``numpy.random.default_rng([seed, stream, index])``, so any image can be
produced alone and adding images never changes earlier ones.

Geometry is in pixel coordinates with inclusive ends: a box ``(x1, y1, x2, y2)`` covers
pixel columns x1..x2 and rows y1..y2, which is what the norm1000 codec expects (0 ↔ the
first pixel, 999 ↔ the last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
from PIL import Image, ImageDraw

ShapeName: TypeAlias = Literal["square", "rectangle", "circle", "triangle"]
Texture: TypeAlias = Literal["plain", "noise", "stripes", "checker"]

SHAPES: tuple[ShapeName, ...] = ("square", "rectangle", "circle", "triangle")
TEXTURES: tuple[Texture, ...] = ("plain", "noise", "stripes", "checker")

#: Named palettes: colour name → RGB. Backgrounds stay grey-ish, so these remain visible.
PALETTES: dict[str, dict[str, tuple[int, int, int]]] = {
    "basic": {
        "red": (220, 40, 40),
        "green": (40, 180, 60),
        "blue": (40, 80, 220),
        "yellow": (240, 220, 40),
    },
    "extended": {
        "red": (220, 40, 40),
        "green": (40, 180, 60),
        "blue": (40, 80, 220),
        "yellow": (240, 220, 40),
        "purple": (150, 60, 200),
        "orange": (245, 140, 30),
        "cyan": (40, 210, 220),
        "pink": (240, 120, 190),
    },
}


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """Difficulty knobs of the synthetic dataset.

    Attributes:
        width: image width in pixels.
        height: image height in pixels.
        min_shapes: fewest shapes per image (0 allowed: some images answer ``{}``).
        max_shapes: most shapes per image.
        palette: a key of :data:`PALETTES` (more colours = harder descriptions).
        shapes: the shape kinds drawn.
        textures: background textures to pick from (``plain`` is easiest).
        min_size: smallest shape extent, as a fraction of the shorter image side.
        max_size: largest shape extent, same unit.
        max_overlap: largest allowed IoU between two shapes' boxes (0: no overlap).
        polygons: annotate triangles with ``poly`` (3 points) instead of ``bbox_2d``.
        name_kinds: ``desc`` names colour and kind (``"red circle"``); False names the
            colour only (``"red shape"``), so categories are the palette's colours.
    """

    width: int = 128
    height: int = 128
    min_shapes: int = 1
    max_shapes: int = 3
    palette: str = "basic"
    shapes: tuple[ShapeName, ...] = SHAPES
    textures: tuple[Texture, ...] = TEXTURES
    min_size: float = 0.2
    max_size: float = 0.45
    max_overlap: float = 0.0
    polygons: bool = True
    name_kinds: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.width < 16 or self.height < 16:
            problems.append(f"image size must be at least 16x16, got {self.width}x{self.height}")
        if not 0 <= self.min_shapes <= self.max_shapes:
            problems.append(
                f"need 0 <= min_shapes <= max_shapes, got {self.min_shapes}, {self.max_shapes}"
            )
        if self.palette not in PALETTES:
            problems.append(f"palette must be one of {sorted(PALETTES)}, got {self.palette!r}")
        if not self.shapes or any(s not in SHAPES for s in self.shapes):
            problems.append(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        if not self.textures or any(t not in TEXTURES for t in self.textures):
            problems.append(f"textures must be a non-empty subset of {TEXTURES}")
        if not 0 < self.min_size <= self.max_size <= 1:
            problems.append(
                f"need 0 < min_size <= max_size <= 1, got {self.min_size}, {self.max_size}"
            )
        if not 0 <= self.max_overlap <= 1:
            problems.append(f"max_overlap must be in [0, 1], got {self.max_overlap}")
        if problems:
            raise ValueError("invalid synthetic scene spec: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class SceneObject:
    """One drawn shape.

    Attributes:
        desc: ``"<colour> <shape>"``, e.g. ``"red square"`` (``"red shape"`` when the
            spec does not name kinds).
        kind: ``bbox_2d`` or ``poly``.
        points: pixel coordinates, flat: a box's ``x1, y1, x2, y2`` (inclusive) or a
            polygon's vertices ``x1, y1, x2, y2, …``.
    """

    desc: str
    kind: Literal["bbox_2d", "poly"]
    points: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scene:
    """A drawn image and its objects (in drawing order)."""

    image: Image.Image
    objects: tuple[SceneObject, ...]


def descriptions(spec: SceneSpec) -> list[str]:
    """Every ``desc`` the spec can produce, sorted."""
    return sorted({_desc(spec, c, s) for c in PALETTES[spec.palette] for s in spec.shapes})


def _desc(spec: SceneSpec, colour: str, shape: ShapeName) -> str:
    return f"{colour} {shape}" if spec.name_kinds else f"{colour} shape"


def draw_scene(spec: SceneSpec, seed: int, index: int, *, stream: int = 0) -> Scene:
    """Draw image ``index`` of stream ``stream`` (e.g. a split) of the dataset ``seed``.

    Deterministic: the image comes from ``numpy.random.default_rng([seed, stream, index])``.
    """
    rng = np.random.default_rng([seed, stream, index])
    image = Image.fromarray(_background(spec, rng))
    draw = ImageDraw.Draw(image)
    colours = list(PALETTES[spec.palette].items())
    n = int(rng.integers(spec.min_shapes, spec.max_shapes + 1))
    placed: list[tuple[int, int, int, int]] = []
    objects = []
    for _ in range(n):
        shape = spec.shapes[int(rng.integers(len(spec.shapes)))]
        box = _place(spec, rng, shape, placed)
        if box is None:
            continue
        placed.append(box)
        name, rgb = colours[int(rng.integers(len(colours)))]
        objects.append(_draw_shape(draw, shape, box, rgb, _desc(spec, name, shape), spec.polygons))
    return Scene(image=image, objects=tuple(objects))


def _background(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    h, w = spec.height, spec.width
    texture = spec.textures[int(rng.integers(len(spec.textures)))]
    base = rng.uniform(90, 170, size=3)
    out = np.broadcast_to(base, (h, w, 3)).astype(np.float64)
    if texture == "noise":
        out = out + rng.normal(0, 18, size=(h, w, 1))
    elif texture == "stripes":
        period = int(rng.integers(6, 16))
        yy, xx = np.mgrid[0:h, 0:w]
        lane = ((xx + yy) // period) % 2 if rng.random() < 0.5 else (yy // period) % 2
        out = out + (lane[..., None] * 2 - 1) * 15
    elif texture == "checker":
        cell = int(rng.integers(8, 20))
        yy, xx = np.mgrid[0:h, 0:w]
        out = out + (((yy // cell + xx // cell) % 2)[..., None] * 2 - 1) * 12
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _place(
    spec: SceneSpec,
    rng: np.random.Generator,
    shape: ShapeName,
    placed: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int] | None:
    short = min(spec.width, spec.height)
    for _ in range(50):
        side = max(4, round(rng.uniform(spec.min_size, spec.max_size) * short))
        bw = bh = side
        if shape == "rectangle":
            narrow = max(3, round(side / rng.uniform(1.5, 2.5)))
            bw, bh = (side, narrow) if rng.random() < 0.5 else (narrow, side)
        bw, bh = min(bw, spec.width - 1), min(bh, spec.height - 1)
        x1 = int(rng.integers(0, spec.width - bw))
        y1 = int(rng.integers(0, spec.height - bh))
        box = (x1, y1, x1 + bw - 1, y1 + bh - 1)
        if spec.max_overlap == 0:
            ok = not any(_touches(box, other) for other in placed)
        else:
            ok = all(_iou(box, other) <= spec.max_overlap for other in placed)
        if ok:
            return box
    return None


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: ShapeName,
    box: tuple[int, int, int, int],
    rgb: tuple[int, int, int],
    desc: str,
    polygons: bool,
) -> SceneObject:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
        return SceneObject(desc, "bbox_2d", box)
    if shape == "triangle":
        apex = ((x1 + x2) // 2, y1)
        vertices = (apex, (x2, y2), (x1, y2))
        draw.polygon(vertices, fill=rgb)
        if polygons:
            return SceneObject(desc, "poly", tuple(v for p in vertices for v in p))
        return SceneObject(desc, "bbox_2d", box)
    draw.rectangle(box, fill=rgb)
    return SceneObject(desc, "bbox_2d", box)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


def _touches(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    gap = 1
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])
