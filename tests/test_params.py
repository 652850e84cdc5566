"""Typed parameters: types from signatures, coercion from CLI strings, bind errors, canonical JSON."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Optional

import pytest

from conveyor import params as P
from conveyor.errors import DefinitionError, ParameterError


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class Frame:
    """Stands in for a value that only an upstream task can produce (a DataFrame, a model)."""


def _params(fn: Any) -> tuple[P.Param, ...]:
    return P.params_of(fn, "task t")


def _bind_text(fn: Any, **values: str) -> dict[str, Any]:
    return P.bind("task t", _params(fn), values, from_text=True)


# -- types read from the signature ------------------------------------------------------------
def test_param_types_are_read_from_the_signature() -> None:
    def fn(
        n: int,
        x: float,
        s: str,
        flag: bool,
        day: date,
        at: datetime,
        path: Path,
        color: Color,
        days: list[date],
        maybe: int | None,
        old_style: Optional[str],  # noqa: UP045 - typing.Optional must work too
        anything=None,
    ) -> None: ...

    names = {p.name: p.type.name for p in _params(fn)}
    assert names == {
        "n": "int",
        "x": "float",
        "s": "str",
        "flag": "bool",
        "day": "date",
        "at": "datetime",
        "path": "Path",
        "color": "Color",
        "days": "list[date]",
        "maybe": "int | None",
        "old_style": "str | None",
        "anything": "any",
    }


def test_required_and_default_parameters_are_described_for_error_messages() -> None:
    def fn(day: date, n: int = 3, color: Color = Color.RED, regions: list[str] = ["eu"]) -> None: ...  # noqa: B006

    described = [p.describe() for p in _params(fn)]
    assert described == ["day: date", "n: int = 3", "color: Color = 'red'", "regions: list[str] = ['eu']"]
    assert [p.required for p in _params(fn)] == [True, False, False, False]


def test_a_default_of_the_wrong_type_is_refused_at_definition_naming_the_parameter() -> None:
    def fn(day: date = "2026-11-01") -> None: ...  # type: ignore[assignment]

    with pytest.raises(DefinitionError, match=r"task t: default of parameter 'day': expected date, got str"):
        _params(fn)


def test_star_args_and_kwargs_are_refused_at_definition() -> None:
    def varargs(*days: date) -> None: ...

    def varkw(**opts: int) -> None: ...

    with pytest.raises(DefinitionError, match=r"task t: parameter \*days is not supported"):
        _params(varargs)
    with pytest.raises(DefinitionError, match=r"task t: parameter \*opts is not supported"):
        _params(varkw)


def test_an_unresolvable_forward_reference_is_a_definition_error() -> None:
    def fn(x: NoSuchType) -> None: ...  # type: ignore[name-defined] # noqa: F821

    with pytest.raises(DefinitionError, match="task t: cannot resolve its type hints"):
        _params(fn)


def test_an_unknown_class_can_only_carry_an_upstream_result() -> None:
    def fn(df: Frame) -> None: ...

    (p,) = _params(fn)
    assert not p.type.literal
    with pytest.raises(ParameterError, match="type Frame cannot be given as a literal"):
        P.bind("task t", (p,), {"df": Frame()})


# -- coercion from command-line strings ----------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (int, "42", 42),
        (int, " -7 ", -7),
        (float, "2.5", 2.5),
        (float, "3", 3.0),
        (str, "hello world", "hello world"),
        (date, "2026-11-01", date(2026, 11, 1)),
        (datetime, "2026-11-01T10:30", datetime(2026, 11, 1, 10, 30)),
        (Path, "data/raw.csv", Path("data/raw.csv")),
        (Color, "green", Color.GREEN),
        (Color, "GREEN", Color.GREEN),  # by member name too
        (Level, "2", Level.HIGH),  # an int-valued enum from its value's text
        (list[int], "1,2, 3", [1, 2, 3]),
        (list[int], "[1, 2, 3]", [1, 2, 3]),
        (list[str], '["a,b", "c"]', ["a,b", "c"]),  # JSON keeps commas inside items
        (list[date], "2026-01-01,2026-01-02", [date(2026, 1, 1), date(2026, 1, 2)]),
        (list[bool], "[true, false]", [True, False]),
        (list[int], "1,,2,", [1, 2]),  # empty items are dropped
        (int | None, "5", 5),
        (int | None, "", None),
        (int | None, "none", None),
        (date | None, "null", None),
        (Any, "3", 3),
        (Any, "[1, 2]", [1, 2]),
        (Any, "plain text", "plain text"),
    ],
)
def test_values_are_parsed_from_command_line_text(annotation: Any, text: str, expected: Any) -> None:
    value = P.param_type(annotation).parse(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", "y", "t", " True "])
def test_bool_accepts_the_usual_spellings_of_true(text: str) -> None:
    assert P.BOOL.parse(text) is True


@pytest.mark.parametrize("text", ["0", "false", "no", "off", "n", "f", "False"])
def test_bool_accepts_the_usual_spellings_of_false(text: str) -> None:
    assert P.BOOL.parse(text) is False


@pytest.mark.parametrize(
    ("annotation", "text", "message"),
    [
        (bool, "maybe", "expected true or false, got 'maybe'"),
        (int, "3.5", "expected an integer, got '3.5'"),
        (int, "many", "expected an integer, got 'many'"),
        (float, "lots", "expected a number, got 'lots'"),
        (date, "2026-13-01", "expected a date like 2026-11-01, got '2026-13-01'"),
        (datetime, "tomorrow", "expected a datetime like 2026-11-01T10:00, got 'tomorrow'"),
        (Color, "blue", "expected one of red, green, got 'blue'"),
        (list[int], "[1, 2", "expected a JSON list or comma-separated values: '[1, 2'"),
        (list[int], "1,x", "expected an integer, got 'x'"),
    ],
)
def test_bad_text_is_refused_with_the_value_and_an_example(annotation: Any, text: str, message: str) -> None:
    param = P.Param("v", P.param_type(annotation))
    with pytest.raises(ParameterError) as err:
        P.bind("pipeline daily", (param,), {"v": text}, from_text=True)
    assert str(err.value) == f"pipeline daily: parameter 'v': {message}"


def test_comma_separated_enum_and_str_lists_tolerate_a_space_after_the_comma() -> None:
    assert P.param_type(list[Color]).parse("red, green") == [Color.RED, Color.GREEN]
    assert P.param_type(list[str]).parse("eu, us") == ["eu", "us"]


def test_bind_from_text_parses_every_string_and_leaves_defaults() -> None:
    def fn(day: date, n: int, regions: list[str], dry: bool = False, limit: int | None = None) -> None: ...

    bound = _bind_text(fn, day="2026-11-01", n="3", regions="eu,us")
    assert bound == {"day": date(2026, 11, 1), "n": 3, "regions": ["eu", "us"], "dry": False, "limit": None}


def test_bind_from_text_still_checks_values_that_are_not_strings() -> None:
    def fn(n: int) -> None: ...

    assert P.bind("task t", _params(fn), {"n": 4}, from_text=True) == {"n": 4}
    with pytest.raises(ParameterError, match=r"expected int, got float 4\.5"):
        P.bind("task t", _params(fn), {"n": 4.5}, from_text=True)


# -- binding Python values -----------------------------------------------------------------------
def test_bind_reports_an_unknown_parameter_with_what_the_task_takes() -> None:
    def fn(day: date, n: int = 3) -> None: ...

    with pytest.raises(ParameterError) as err:
        P.bind("task t", _params(fn), {"day": date(2026, 1, 1), "dya": 1, "zzz": 2})
    assert str(err.value) == "task t: unknown parameter 'dya'; it takes day: date, n: int = 3"


def test_bind_reports_unknown_parameter_of_a_task_without_parameters() -> None:
    with pytest.raises(ParameterError, match=r"task t: unknown parameter 'x'; it takes no parameters"):
        P.bind("task t", (), {"x": 1})


def test_bind_reports_a_missing_parameter_with_its_type() -> None:
    def fn(day: date, n: int = 3) -> None: ...

    with pytest.raises(ParameterError) as err:
        P.bind("task t", _params(fn), {"n": 1})
    assert str(err.value) == "task t: missing parameter day: date"


@pytest.mark.parametrize(
    ("annotation", "value", "message"),
    [
        (int, "3", "expected int, got str '3'"),
        (int, True, "expected int, got bool True"),  # a bool is not a number here
        (float, False, "expected float, got bool False"),
        (str, 3, "expected str, got int 3"),
        (bool, 1, "expected bool, got int 1"),
        (date, datetime(2026, 1, 1, 10), "expected date, got datetime"),
        (date, "2026-01-01", "expected date, got str '2026-01-01'"),
        (Path, 3, "expected a path, got int 3"),
        (Color, "red", "expected Color (one of red, green), got 'red'"),
        (list[int], 3, "expected a list of int, got int"),
        (list[int], [1, "2"], "expected int, got str '2'"),
        (int | None, "x", "expected int, got str 'x'"),
        (Any, object(), "is not a plain value; annotate the parameter"),
    ],
)
def test_bind_refuses_ill_typed_values_naming_owner_parameter_and_value(
    annotation: Any, value: Any, message: str
) -> None:
    param = P.Param("v", P.param_type(annotation))
    with pytest.raises(ParameterError) as err:
        P.bind("task t", (param,), {"v": value})
    assert str(err.value).startswith("task t: parameter 'v': ")
    assert message in str(err.value)


def test_bind_normalizes_values_to_their_declared_type() -> None:
    def fn(x: float, path: Path, days: list[date], maybe: int | None = None) -> None: ...

    bound = P.bind("task t", _params(fn), {"x": 2, "path": "out/a.csv", "days": (date(2026, 1, 1),)})
    assert bound == {"x": 2.0, "path": Path("out/a.csv"), "days": [date(2026, 1, 1)], "maybe": None}
    assert isinstance(bound["x"], float)
    assert isinstance(bound["days"], list)


def test_bind_accepts_enum_members_and_any_json_value() -> None:
    def fn(color: Color, extra=None) -> None: ...

    bound = P.bind("task t", _params(fn), {"color": Color.GREEN, "extra": {"k": [1, 2]}})
    assert bound == {"color": Color.GREEN, "extra": {"k": [1, 2]}}


# -- canonical JSON ------------------------------------------------------------------------------
def test_to_json_and_from_json_round_trip_every_type() -> None:
    def fn(
        day: date,
        at: datetime,
        path: Path,
        color: Color,
        level: Level,
        days: list[date],
        maybe: date | None,
        nothing: date | None,
        n: int,
        x: float,
    ) -> None: ...

    params = _params(fn)
    values = {
        "day": date(2026, 11, 1),
        "at": datetime(2026, 11, 1, 10, 30, 15),
        "path": Path("data/x.csv"),
        "color": Color.RED,
        "level": Level.HIGH,
        "days": [date(2026, 1, 1), date(2026, 1, 2)],
        "maybe": date(2026, 2, 1),
        "nothing": None,
        "n": 3,
        "x": 0.5,
    }
    data = P.to_json(params, values)
    assert data == {
        "day": "2026-11-01",
        "at": "2026-11-01T10:30:15",
        "path": "data/x.csv",
        "color": "red",
        "level": 2,
        "days": ["2026-01-01", "2026-01-02"],
        "maybe": "2026-02-01",
        "nothing": None,
        "n": 3,
        "x": 0.5,
    }
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert P.from_json(params, data) == values


def test_from_json_ignores_names_the_task_no_longer_has() -> None:
    def fn(n: int) -> None: ...

    assert P.from_json(_params(fn), {"n": 1, "removed": "x"}) == {"n": 1}


def test_canonical_json_is_stable_whatever_the_key_order() -> None:
    a = P.canonical_json({"b": 1, "a": {"y": [1, 2], "x": "s"}})
    b = P.canonical_json({"a": {"x": "s", "y": [1, 2]}, "b": 1})
    assert a == b == '{"a":{"x":"s","y":[1,2]},"b":1}'


def test_canonical_json_encodes_dates_paths_and_enums() -> None:
    text = P.canonical_json({"d": date(2026, 1, 2), "p": Path("a/b"), "c": Color.GREEN})
    assert text == '{"c":"green","d":"2026-01-02","p":"a/b"}'


# -- name=value pairs from the command line ------------------------------------------------------
def test_parse_assignments_splits_at_the_first_equals_sign() -> None:
    pairs = ["day=2026-11-01", " n =3", "query=a=b", "empty="]
    assert P.parse_assignments(pairs) == {"day": "2026-11-01", "n": "3", "query": "a=b", "empty": ""}


@pytest.mark.parametrize("pair", ["day", "=3", "  =x"])
def test_parse_assignments_refuses_a_pair_without_a_name(pair: str) -> None:
    with pytest.raises(ParameterError, match=r"is not name=value; write it like -p day=2026-11-01"):
        P.parse_assignments([pair])


def test_an_opaque_parameter_with_a_default_does_not_break_error_messages() -> None:
    def fn(df: Frame = None, n: int = 1) -> None: ...  # type: ignore[assignment]

    with pytest.raises(ParameterError, match="unknown parameter 'm'"):
        P.bind("task t", _params(fn), {"m": 2})


def test_a_nul_character_is_refused_in_any_parameter() -> None:
    """A worker would fail on it ("embedded null byte") in a path, a command or the store."""

    def fn(name: str, where: Path, names: list[str]) -> None: ...

    params = _params(fn)
    ok = {"name": "a", "where": Path("p"), "names": ["x"]}
    assert P.bind("pipeline p", params, ok) == ok
    for field, bad in (("name", "a\x00b"), ("where", Path("a\x00b")), ("names", ["x", "y\x00"])):
        with pytest.raises(
            ParameterError, match=rf"pipeline p: parameter '{field}': .* contains a NUL character"
        ):
            P.bind("pipeline p", params, {**ok, field: bad})
    with pytest.raises(ParameterError, match="contains a NUL character"):
        P.bind("pipeline p", params, {**ok, "name": "a\x00"}, from_text=True)
