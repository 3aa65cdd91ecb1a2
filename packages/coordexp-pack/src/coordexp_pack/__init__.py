"""Deterministic packing of segments into fixed-capacity packs, and accumulation windows."""

from importlib.metadata import version as _version

from coordexp_pack.bin_packing import lower_bound, pack
from coordexp_pack.carry import CarryPacker, PackRound
from coordexp_pack.segments import OVERSIZE_POLICIES, OversizePolicy, Pack, Segment, pack_segments
from coordexp_pack.windows import Window, WindowPlan, accumulation_windows

__version__ = _version("coordexp-pack")

__all__ = [
    "OVERSIZE_POLICIES",
    "CarryPacker",
    "OversizePolicy",
    "Pack",
    "PackRound",
    "Segment",
    "Window",
    "WindowPlan",
    "__version__",
    "accumulation_windows",
    "lower_bound",
    "pack",
    "pack_segments",
]
