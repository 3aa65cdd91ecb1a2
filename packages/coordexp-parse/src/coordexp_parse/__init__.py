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
from coordexp_parse.injection import InjectedAnswer, Owner, Role, build_injection, inject_text
from coordexp_parse.objects import (
    GEOMETRY_KINDS,
    DetObject,
    GeometryKind,
    ObjectError,
    geometry_problem,
)
from coordexp_parse.ordering import canonical_object, canonical_order, canonical_polygon
from coordexp_parse.parsed import (
    DROP_REASONS,
    Ending,
    Entry,
    ParsedObject,
    RolloutParse,
    TokenSpans,
)
from coordexp_parse.records import (
    JsonlRecords,
    PixelObject,
    Record,
    RecordError,
    read_records,
    validate_record,
)
from coordexp_parse.render import (
    FIELD_ORDERS,
    STOP_STRINGS,
    FieldOrder,
    ObjectLike,
    render_objects,
)
from coordexp_parse.scanner import parse_text
from coordexp_parse.tokens import (
    END_TOKEN,
    Alignment,
    RolloutParser,
    TokenizerError,
    TokenizerLike,
    parse_rollout,
    parser_for,
)

__version__ = _version("coordexp-parse")

__all__ = [
    "DROP_REASONS",
    "END_TOKEN",
    "FIELD_ORDERS",
    "GEOMETRY_KINDS",
    "MAX_BIN",
    "NUM_BINS",
    "STOP_STRINGS",
    "Alignment",
    "DetObject",
    "Ending",
    "Entry",
    "FieldOrder",
    "GeometryKind",
    "InjectedAnswer",
    "JsonlRecords",
    "ObjectError",
    "ObjectLike",
    "Owner",
    "ParsedObject",
    "PixelObject",
    "Record",
    "RecordError",
    "Role",
    "RolloutParse",
    "RolloutParser",
    "TokenSpans",
    "TokenizerError",
    "TokenizerLike",
    "__version__",
    "all_coord_tokens",
    "bin_to_pixel",
    "bin_to_unit",
    "build_injection",
    "canonical_object",
    "canonical_order",
    "canonical_polygon",
    "coord_token",
    "coord_value",
    "geometry_problem",
    "inject_text",
    "is_coord_token",
    "parse_rollout",
    "parse_text",
    "parser_for",
    "pixel_to_bin",
    "read_records",
    "render_objects",
    "validate_record",
]
