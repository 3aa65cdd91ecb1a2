"""The generic strict parser: a payload of YAML values → a validated dataclass instance.

Accepted keys come from the dataclass fields, nothing else. The parser walks nested
dataclasses, ``tuple[T, ...]``/``list[T]`` (paths ``a.b[3].c``), ``dict[str, T]``,
``Optional``/unions, ``Literal`` and the primitives, and collects every problem before
raising. Shape problems (unknown, rejected or missing keys, wrong types) are found first;
a section whose shape is valid is then checked semantically: the numeric bounds declared
with :func:`coordexp_schema.fields.knob` and the section's own ``validate()`` method.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, TypeVar, Union, cast, get_args, get_origin
from typing import get_type_hints as _get_type_hints

from coordexp_schema.fields import field_bounds, is_required, rejected_keys
from coordexp_schema.issues import ConfigError, ConfigIssue

T = TypeVar("T")
_INVALID: Any = object()


class Validated(Protocol):
    """A section with semantic checks beyond types and bounds."""

    def validate(self) -> Iterable[tuple[str, str]]:
        """Yield ``(relative_path, message)`` for each problem ("" = the section itself)."""
        ...


def parse_strict(schema_type: type[T], payload: object, path: str = "") -> T:
    """Parse ``payload`` into ``schema_type``, rejecting anything the schema does not declare.

    Args:
        schema_type: a config dataclass (or any type expression the parser supports).
        payload: plain YAML data (mappings, lists, scalars).
        path: dotted path of ``payload`` inside the whole config, used in messages.

    Returns:
        The frozen, normalised instance: ints given for floats become floats, lists
        become tuples where the schema says ``tuple``.

    Raises:
        ConfigError: listing every problem found, each with its dotted path.
    """
    issues: list[ConfigIssue] = []
    result = _Parser(issues).parse(schema_type, payload, path)
    if issues:
        raise ConfigError(issues)
    return cast(T, result)


def join(path: str, key: str) -> str:
    """Dotted path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a config dataclass (cached)."""
    return _get_type_hints(cls)


def init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a config dataclass that a config may set."""
    return [f for f in dataclasses.fields(cls) if f.init]


def is_union(tp: object) -> bool:
    """True for ``X | Y`` and ``Optional[X]``."""
    return get_origin(tp) in (Union, types.UnionType)


def describe(tp: object) -> str:
    """Human wording of a schema type, used in 'expected ...' messages."""
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if is_union(tp):
        return " or ".join(describe(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"list of {describe(get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of string to {describe(get_args(tp)[1])}"
    names = {bool: "bool", int: "int", float: "number", str: "string"}
    if isinstance(tp, type) and tp in names:
        return names[tp]
    raise TypeError(f"unsupported schema type {tp!r}")


def received(value: object) -> str:
    """Human wording of a YAML value, used in 'got ...' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {int: "int", float: "number", str: "string"}.get(type(value), type(value).__name__)
    return f"{kind} {text}"


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt ``word``, or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return found[0] if found else None


def _literal_member(tp: object, value: object) -> bool:
    return any(type(value) is type(a) and value == a for a in get_args(tp))


def _kind_matches(tp: object, value: object) -> bool:
    """Whether ``value`` has the outer shape of ``tp`` (used to pick a union member)."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if (isinstance(tp, type) and dataclasses.is_dataclass(tp)) or origin is dict:
        return isinstance(value, Mapping)
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    if origin is Literal:
        return _literal_member(tp, value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


class _Parser:
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        self.shape_errors = 0

    def error(self, path: str, message: str) -> None:
        """Record a shape problem: the value at ``path`` cannot be built."""
        self.shape_errors += 1
        self.issues.append(ConfigIssue(path, message))

    def semantic_error(self, path: str, message: str) -> None:
        """Record a value problem: the section was built but breaks a rule."""
        self.issues.append(ConfigIssue(path, message))

    def mismatch(self, tp: object, value: object, path: str) -> Any:
        self.error(path, f"expected {describe(tp)}, got {received(value)}")
        return _INVALID

    def parse(self, tp: Any, value: object, path: str) -> Any:
        origin = get_origin(tp)
        if tp is Any:
            return copy.deepcopy(value)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.parse_dataclass(tp, value, path)
        if origin is Literal:
            return self.parse_literal(tp, value, path)
        if is_union(tp):
            return self.parse_union(tp, value, path)
        if origin in (tuple, list):
            return self.parse_sequence(tp, value, path)
        if origin is dict:
            return self.parse_mapping(tp, value, path)
        if tp is float:
            if not _kind_matches(float, value):
                return self.mismatch(tp, value, path)
            number = float(cast(float, value))
            if not math.isfinite(number):
                self.error(path, f"expected a finite number, got {number!r}")
                return _INVALID
            return number
        if tp in (bool, int, str):
            return value if _kind_matches(tp, value) else self.mismatch(tp, value, path)
        raise TypeError(f"unsupported schema type {tp!r} at {path or '<root>'}")

    def parse_literal(self, tp: Any, value: object, path: str) -> Any:
        if _literal_member(tp, value):
            return value
        message = f"expected {describe(tp)}, got {received(value)}"
        if isinstance(value, str):
            close = suggest(value, [a for a in get_args(tp) if isinstance(a, str)])
            if close is not None:
                message += f"; did you mean {close!r}?"
        self.error(path, message)
        return _INVALID

    def parse_union(self, tp: Any, value: object, path: str) -> Any:
        members = [m for m in get_args(tp) if _kind_matches(m, value)]
        if not members:
            literal_members = [m for m in get_args(tp) if get_origin(m) is Literal]
            if isinstance(value, str) and len(literal_members) == 1:
                return self.parse_literal(literal_members[0], value, path)
            return self.mismatch(tp, value, path)
        if value is None:
            return None
        return self.parse(members[0], value, path)

    def parse_sequence(self, tp: Any, value: object, path: str) -> Any:
        if not isinstance(value, list | tuple):
            return self.mismatch(tp, value, path)
        args = get_args(tp)
        if get_origin(tp) is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"only tuple[T, ...] is supported, got {tp!r}")
        before = self.shape_errors
        items = [self.parse(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
        if self.shape_errors > before:
            return _INVALID
        return tuple(items) if get_origin(tp) is tuple else items

    def parse_mapping(self, tp: Any, value: object, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.mismatch(tp, value, path)
        key_type, value_type = get_args(tp)
        if key_type is not str:
            raise TypeError(f"only dict[str, T] is supported, got {tp!r}")
        before = self.shape_errors
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {received(key)}")
                continue
            out[key] = self.parse(value_type, item, join(path, key))
        return _INVALID if self.shape_errors > before else out

    def parse_dataclass(self, cls: type, value: object, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.mismatch(cls, value, path)
        fields = {f.name: f for f in init_fields(cls)}
        rejected = rejected_keys(cls)
        hints = type_hints(cls)
        before = self.shape_errors
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {received(key)}")
            elif key in rejected:
                self.error(join(path, key), rejected[key])
            elif key not in fields:
                self.error(join(path, key), _unknown_key_message(path, key, fields))
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            sub = join(path, name)
            if name in value:
                parsed = self.parse(hints[name], value[name], sub)
                if parsed is not _INVALID:
                    kwargs[name] = parsed
            elif is_required(f):
                self.error(sub, f"missing required key (expected {describe(hints[name])})")
        if self.shape_errors > before:
            return _INVALID
        instance = cls(**kwargs)
        self.check_semantics(instance, path)
        return instance

    def check_semantics(self, instance: Any, path: str) -> None:
        for f in init_fields(type(instance)):
            bounds = field_bounds(f)
            current = getattr(instance, f.name)
            if bounds and isinstance(current, int | float) and not isinstance(current, bool):
                problem = bounds.problem(current)
                if problem is not None:
                    self.semantic_error(join(path, f.name), problem)
        validate = getattr(instance, "validate", None)
        if callable(validate):
            for relative, message in cast(Validated, instance).validate():
                self.semantic_error(join(path, relative) if relative else path, message)


def _unknown_key_message(path: str, key: str, fields: Mapping[str, object]) -> str:
    where = path or "top-level"
    message = f"Unknown {where} keys: [{key!r}]"
    close = suggest(key, fields)
    if close is not None:
        return f"{message}; did you mean {close!r}?"
    return f"{message}; accepted keys: {sorted(fields)}"
