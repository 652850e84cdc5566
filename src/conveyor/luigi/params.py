"""Luigi parameters as Conveyor parameters: typed on the command line, stored in Luigi's own form.

A Luigi class's parameters become its pipeline's parameters. ``IntParameter``, ``FloatParameter``,
``BoolParameter`` and ``DateParameter`` map to Conveyor's own ``int``, ``float``, ``bool`` and
``date`` (so that ``-p`` values, the API and the UI treat them as such); every other Parameter
type keeps Luigi's meaning: a value is parsed with the parameter's own ``parse`` and normalized
with its ``normalize``, and stored as its ``serialize`` text, which is what the worker gives back
to ``from_str_params``. Nothing here re-implements a Luigi type, so a custom Parameter subclass
works the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import luigi
from luigi.parameter import ParameterVisibility

from conveyor import params as P


def visible(cls: type[luigi.Task]) -> list[tuple[str, luigi.Parameter]]:
    """The parameters of a Luigi class that ``to_str_params`` carries (all but private ones)."""
    return [(n, p) for n, p in cls.get_params() if p.visibility != ParameterVisibility.PRIVATE]


def _exact(p: luigi.Parameter) -> type:
    return type(p)


_NATIVE: dict[type, P.ParamType] = {
    luigi.IntParameter: P.INT,
    luigi.FloatParameter: P.FLOAT,
    luigi.BoolParameter: P.BOOL,
    luigi.DateParameter: P.DATE,
}


def _nullable(ptype: P.ParamType) -> P.ParamType:
    """``ptype`` that also holds None (a Luigi parameter whose default is None), keeping its name."""

    def check(value: Any) -> Any:
        return None if value is None else ptype.check(value)

    def parse(text: str) -> Any:
        return None if text.strip().lower() in {"", "none", "null"} else ptype.parse(text)

    def to_json(value: Any) -> Any:
        return None if value is None else ptype.to_json(value)

    def from_json(value: Any) -> Any:
        return None if value is None else ptype.from_json(value)

    return dataclasses.replace(ptype, check=check, parse=parse, to_json=to_json, from_json=from_json)


def luigi_type(p: luigi.Parameter) -> P.ParamType:
    """The Conveyor type of one Luigi parameter (see the module's docstring)."""
    native = _NATIVE.get(_exact(p))
    if native is not None:
        return native
    kind = type(p).__name__

    def normalize(value: Any) -> Any:
        try:
            return p.normalize(value)
        except Exception as exc:
            raise ValueError(f"not a valid {kind}: {value!r} ({exc})") from None

    def parse(text: str) -> Any:
        try:
            value = p.parse(text)
        except Exception as exc:
            raise ValueError(f"{text!r} is not a valid {kind}: {exc}") from None
        return normalize(value)

    def to_json(value: Any) -> Any:
        return None if value is None else p.serialize(value)

    def from_json(value: Any) -> Any:
        return None if value is None else parse(value)

    choices: tuple[str, ...] = ()
    if isinstance(p, luigi.EnumParameter):
        choices = tuple(m.name for m in p._enum)
    elif isinstance(p, luigi.ChoiceParameter):
        choices = tuple(str(c) for c in p._choices)
    return P.ParamType(kind, normalize, parse, to_json, from_json, choices=choices)


def pipeline_param(family: str, name: str, p: luigi.Parameter) -> P.Param:
    """The pipeline parameter for ``p``: its type, and its default (from the class or from
    Luigi's configuration files, as Luigi itself would take it)."""
    ptype = luigi_type(p)
    default = P.MISSING
    if p.has_task_value(family, name):
        default = p.task_value(family, name)
        if default is None:
            ptype = _nullable(ptype)
        elif ptype in _NATIVE.values():
            default = ptype.check(default)
    return P.Param(name, ptype, default)


def optional_date(kind: P.ParamType) -> P.ParamType:
    """``logical_date`` of a Luigi pipeline: a date (or datetime) that may be absent."""
    return _nullable(kind)
