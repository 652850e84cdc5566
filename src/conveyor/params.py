"""Typed parameters: read from a function's signature, validated, coerced from CLI strings.

A parameter's type is one of ``int``, ``float``, ``str``, ``bool``, ``date``, ``datetime``,
``Path``, an ``Enum``, a ``list`` of these, or ``X | None``. Unannotated parameters take any
JSON value. Every value has a canonical JSON form, which makes a task instance's identity stable.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from conveyor.errors import ParameterError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class ParamType:
    """One parameter type: how to check a Python value, parse a string and encode as JSON."""

    name: str
    check: Callable[[Any], Any]  # returns the normalized value or raises ValueError
    parse: Callable[[str], Any]
    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]
    literal: bool = True  # False: only an upstream result can fill it
    choices: tuple[str, ...] = ()  # an Enum's values


def _check_instance(cls: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, cls) and not (cls is int and isinstance(value, bool)):
            return value
        raise ValueError(f"expected {cls.__name__}, got {type(value).__name__} {value!r}")

    return check


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _check_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected float, got {type(value).__name__} {value!r}")
    return float(value)


def _check_date(value: Any) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(f"expected date, got {type(value).__name__} {value!r}")
    return value


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a date like 2026-11-01, got {text!r}") from None


def _parse_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a datetime like 2026-11-01T10:00, got {text!r}") from None


def _check_path(value: Any) -> Path:
    if isinstance(value, str | Path):
        return Path(value)
    raise ValueError(f"expected a path, got {type(value).__name__} {value!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _identity(value: Any) -> Any:
    return value


def _check_json(value: Any) -> Any:
    try:
        json.dumps(value, sort_keys=True, default=_json_default)
    except (TypeError, ValueError):
        raise ValueError(
            f"{type(value).__name__} {value!r} is not a plain value; annotate the parameter "
            "with a supported type, or pass an upstream task's result"
        ) from None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError


def _parse_json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


INT = ParamType("int", _check_instance(int), _parse_int, _identity, int)
FLOAT = ParamType("float", _check_float, _parse_float, _identity, float)
STR = ParamType("str", _check_instance(str), str, _identity, str)
BOOL = ParamType("bool", _check_instance(bool), _parse_bool, _identity, bool)
DATE = ParamType("date", _check_date, _parse_date, date.isoformat, date.fromisoformat)
DATETIME = ParamType(
    "datetime",
    _check_instance(datetime),
    _parse_datetime,
    datetime.isoformat,
    datetime.fromisoformat,
)
PATH = ParamType("Path", _check_path, Path, str, Path)
ANY = ParamType("any", _check_json, _parse_json_or_text, _identity, _identity)

_SIMPLE: dict[Any, ParamType] = {
    int: INT,
    float: FLOAT,
    str: STR,
    bool: BOOL,
    date: DATE,
    datetime: DATETIME,
    Path: PATH,
    inspect.Parameter.empty: ANY,
    Any: ANY,
}


def _enum_type(cls: type[enum.Enum]) -> ParamType:
    names = ", ".join(str(m.value) for m in cls)

    def check(value: Any) -> enum.Enum:
        if isinstance(value, cls):
            return value
        raise ValueError(f"expected {cls.__name__} (one of {names}), got {value!r}")

    def parse(text: str) -> enum.Enum:
        for member in cls:
            if text == str(member.value) or text == member.name:
                return member
        raise ValueError(f"expected one of {names}, got {text!r}")

    return ParamType(
        cls.__name__, check, parse, lambda m: m.value, cls, choices=tuple(str(m.value) for m in cls)
    )


def _list_type(item: ParamType) -> ParamType:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of {item.name}, got {type(value).__name__}")
        return [item.check(v) for v in value]

    def parse(text: str) -> list[Any]:
        text = text.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                raise ValueError(f"expected a JSON list or comma-separated values: {text!r}") from None
            return [item.parse(str(v)) if not isinstance(v, str) else item.parse(v) for v in raw]
        return [item.parse(part.strip()) for part in text.split(",") if part.strip()]

    return ParamType(
        f"list[{item.name}]",
        check,
        parse,
        lambda v: [item.to_json(x) for x in v],
        lambda v: [item.from_json(x) for x in v],
    )


def _optional_type(inner: ParamType) -> ParamType:
    def check(value: Any) -> Any:
        return None if value is None else inner.check(value)

    def parse(text: str) -> Any:
        return None if text.strip().lower() in {"", "none", "null"} else inner.parse(text)

    return ParamType(
        f"{inner.name} | None",
        check,
        parse,
        lambda v: None if v is None else inner.to_json(v),
        lambda v: None if v is None else inner.from_json(v),
    )


def _opaque_type(annotation: Any) -> ParamType:
    name = getattr(annotation, "__name__", str(annotation))

    def refuse(value: Any) -> Any:
        if value is None:  # the usual default of such a parameter
            return None
        raise ValueError(f"type {name} cannot be given as a literal; pass an upstream task's result instead")

    return ParamType(name, refuse, refuse, refuse, refuse, literal=False)


def param_type(annotation: Any) -> ParamType:
    """The ``ParamType`` for a type annotation; unknown classes can only carry upstream results."""
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_type(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and args:
        return _list_type(param_type(args[0]))
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional_type(param_type(rest[0]))
    return _opaque_type(annotation)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter of a task or pipeline."""

    name: str
    type: ParamType
    default: Any = MISSING

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def describe(self) -> str:
        if self.required:
            return f"{self.name}: {self.type.name}"
        shown = self.type.to_json(self.default) if self.type.literal else self.default
        default = f" = {shown!r}"
        return f"{self.name}: {self.type.name}{default}"


def params_of(fn: Callable[..., Any], owner: str, *, skip: str | None = None) -> tuple[Param, ...]:
    """The parameters of ``fn``, with their types resolved; raise for what cannot be a parameter.
    ``skip``: one the runner fills itself (a spark task's session), not a parameter."""
    from conveyor.errors import DefinitionError

    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # a forward reference that does not resolve
        raise DefinitionError(f"{owner}: cannot resolve its type hints ({exc})") from None
    out: list[Param] = []
    for p in inspect.signature(fn).parameters.values():
        if p.name == skip:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"{owner}: parameter *{p.name} is not supported; declare each parameter by name"
            )
        ptype = param_type(hints.get(p.name, p.empty))
        default = MISSING if p.default is p.empty else p.default
        if default is not MISSING and ptype.literal:
            try:
                default = ptype.check(default)
            except ValueError as exc:
                raise DefinitionError(f"{owner}: default of parameter {p.name!r}: {exc}") from None
        out.append(Param(p.name, ptype, default))
    return tuple(out)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` from the command line into a dict; raise for a pair without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"parameter {pair!r} is not name=value; write it like -p day=2026-11-01")
        out[name.strip()] = value
    return out


def bind(
    owner: str,
    params: tuple[Param, ...],
    values: Mapping[str, Any],
    *,
    from_text: bool = False,
    opaque: bool = False,
) -> dict[str, Any]:
    """Check ``values`` against ``params``: unknown and missing names, types; fill defaults.

    With ``opaque``, a parameter whose type only an upstream result can fill takes any value
    unchecked (a task called as a plain function).
    """
    known = {p.name for p in params}
    problems: dict[str, str] = {}  # every bad field, for whoever shows them all (the API)
    messages: list[str] = []
    unknown = sorted(set(values) - known)
    for name in unknown:
        problems[name] = "unknown parameter"
    if unknown:
        messages.append(
            f"{owner}: unknown parameter {unknown[0]!r}; it takes "
            f"{', '.join(p.describe() for p in params) or 'no parameters'}"
        )
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in values:
            if p.required:
                problems[p.name] = f"missing: a {p.type.name} is required"
                messages.append(f"{owner}: missing parameter {p.describe()}")
            out[p.name] = p.default
            continue
        raw = values[p.name]
        if opaque and not p.type.literal:
            out[p.name] = raw
            continue
        try:
            out[p.name] = _refuse_nul(_coerce(p.type, raw, from_text))
        except ValueError as exc:
            problems[p.name] = str(exc)
            messages.append(f"{owner}: parameter {p.name!r}: {exc}")
    if messages:
        raise ParameterError(messages[0], problems)
    return out


def _coerce(ptype: ParamType, raw: Any, from_text: bool) -> Any:
    """``raw`` as a value of ``ptype``. From text (the command line, a JSON request) a string is
    parsed, and a JSON value in the type's JSON form (a list of dates as strings) is read."""
    if from_text and isinstance(raw, str):
        return ptype.parse(raw)
    try:
        return ptype.check(raw)
    except ValueError:
        if not from_text or isinstance(raw, bool | int | float) or raw is None:
            raise
        try:
            return ptype.check(ptype.from_json(raw))
        except Exception:
            pass
        raise


def _refuse_nul(value: Any) -> Any:
    """``value``, unless a text in it holds a NUL character, which no file name, command line
    or store can keep (a worker would fail with "embedded null byte")."""
    texts: list[Any] = [value]
    while texts:
        v = texts.pop()
        if isinstance(v, str | Path) and "\x00" in str(v):
            raise ValueError(f"{str(v)!r} contains a NUL character (\\x00); remove it")
        if isinstance(v, list | tuple | set | frozenset):
            texts += v
        elif isinstance(v, dict):
            texts += [*v.keys(), *v.values()]
    return value


def to_json(params: tuple[Param, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical JSON form of bound literal values."""
    by_name = {p.name: p for p in params}
    return {k: by_name[k].type.to_json(v) for k, v in values.items()}


def from_json(params: tuple[Param, ...], data: Mapping[str, Any]) -> dict[str, Any]:
    """Values back from their canonical JSON form."""
    by_name = {p.name: p for p in params}
    return {k: by_name[k].type.from_json(v) for k, v in data.items() if k in by_name}


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_json_default)


def canonical_json(data: Any) -> str:
    """One stable text for a JSON value: sorted keys, no spaces."""
    return _CANONICAL.encode(data)
