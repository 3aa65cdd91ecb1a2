"""Geometry and exact Hungarian matching of predicted objects to ground truth.

Public API: ``match`` (returns ``MatchResult``) and ``iou_matrix``; objects are anything
with ``kind`` and ``coords`` (``Geometry``), such as coordexp_parse.DetObject.
"""

from importlib.metadata import version as _version

from coordexp_match.geometry import Geometry
from coordexp_match.iou import iou_matrix
from coordexp_match.matching import MatchResult, match

__version__ = _version("coordexp-match")

__all__ = ["Geometry", "MatchResult", "__version__", "iou_matrix", "match"]
