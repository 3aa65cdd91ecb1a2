"""The CoordExp output contract: coord tokens, objects, rendering and rollout parsing."""

from importlib.metadata import version as _version

from coordexp_parse.codec import (
    MAX_BIN,
    NUM_BINS,
    all_coord_tokens,
    bin_to_pixel,
    bin_to_unit,
    coord_token,
    coord_value,
    is_coord_token,
    pixel_to_bin,
)
from coordexp_parse.objects import (
    GEOMETRY_KINDS,
    DetObject,
    GeometryKind,
    ObjectError,
    geometry_problem,
)

__version__ = _version("coordexp-parse")

__all__ = [
    "GEOMETRY_KINDS",
    "MAX_BIN",
    "NUM_BINS",
    "DetObject",
    "GeometryKind",
    "ObjectError",
    "__version__",
    "all_coord_tokens",
    "bin_to_pixel",
    "bin_to_unit",
    "coord_token",
    "coord_value",
    "geometry_problem",
    "is_coord_token",
    "pixel_to_bin",
]
