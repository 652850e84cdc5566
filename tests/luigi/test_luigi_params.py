"""Every stock Luigi Parameter type, given on the command line (``-p name=text``), reaches the
Luigi task in the worker as the value Luigi itself would parse, and the task instance's
identity does not depend on how the value was written."""

from __future__ import annotations

import datetime as dt
import enum
from pathlib import Path

import luigi
import pytest
from luigi.date_interval import Week

from conveyor.errors import ParameterError
from conveyor.luigi import from_task
from conveyor.luigi.execution import rebuild


class Colour(enum.Enum):
    red = 1
    blue = 2


class Everything(luigi.Task):
    """One of every stock Parameter type."""

    text = luigi.Parameter()
    plain = luigi.StrParameter(default="x")
    count = luigi.IntParameter()
    ratio = luigi.FloatParameter(default=0.5)
    flag = luigi.BoolParameter()
    day = luigi.DateParameter()
    hour = luigi.DateHourParameter(default=dt.datetime(2019, 4, 26, 7))
    minute = luigi.DateMinuteParameter(default=dt.datetime(2019, 4, 26, 7, 30))
    second = luigi.DateSecondParameter(default=dt.datetime(2019, 4, 26, 7, 30, 5))
    month = luigi.MonthParameter(default=dt.date(2019, 4, 1))
    year = luigi.YearParameter(default=dt.date(2019, 1, 1))
    interval = luigi.DateIntervalParameter(default=Week.from_date(dt.date(2019, 4, 26)))
    every = luigi.TimeDeltaParameter(default=dt.timedelta(hours=1))
    colour = luigi.EnumParameter(enum=Colour, default=Colour.red)
    colours = luigi.EnumListParameter(enum=Colour, default=[Colour.red])
    items = luigi.ListParameter(default=[1, 2])
    pair = luigi.TupleParameter(default=(1, "a"))
    settings = luigi.DictParameter(default={"a": 1})
    choice = luigi.ChoiceParameter(choices=["fast", "slow"], default="fast")
    choices = luigi.ChoiceListParameter(choices=["a", "b", "c"], default=["a"])
    number = luigi.NumericalParameter(var_type=int, min_value=0, max_value=10, default=3)
    where = luigi.PathParameter(default=Path("/tmp/x"))
    maybe = luigi.OptionalParameter(default=None)
    maybe_int = luigi.OptionalIntParameter(default=None)
    maybe_list = luigi.OptionalListParameter(default=None)
    maybe_dict = luigi.OptionalDictParameter(default=None)
    maybe_path = luigi.OptionalPathParameter(default=None)

    def output(self):
        return luigi.LocalTarget(f"never/{self.task_id}")


TEXTS = {
    "text": "hello",
    "count": "7",
    "ratio": "0.25",
    "flag": "true",
    "day": "2019-04-26",
    "hour": "2019-04-26T09",
    "minute": "2019-04-26T0915",
    "second": "2019-04-26T091510",
    "month": "2019-03",
    "year": "2018",
    "interval": "2019-W10",
    "every": "2 days",
    "colour": "blue",
    "colours": "red,blue",
    "items": "[3, 4, 5]",
    "pair": '[2, "b"]',
    "settings": '{"k": [1, 2]}',
    "choice": "slow",
    "choices": "b,c",
    "number": "9",
    "where": "/data/in",
    "maybe": "given",
    "maybe_int": "4",
    "maybe_list": "[1]",
    "maybe_dict": '{"z": 0}',
    "maybe_path": "/data/out",
}

EXPECTED = dict(
    text="hello",
    count=7,
    ratio=0.25,
    flag=True,
    day=dt.date(2019, 4, 26),
    hour=dt.datetime(2019, 4, 26, 9),
    minute=dt.datetime(2019, 4, 26, 9, 15),
    second=dt.datetime(2019, 4, 26, 9, 15, 10),
    month=dt.date(2019, 3, 1),
    year=dt.date(2018, 1, 1),
    interval=Week(2019, 10),
    every=dt.timedelta(days=2),
    colour=Colour.blue,
    colours=[Colour.red, Colour.blue],
    items=[3, 4, 5],
    pair=(2, "b"),
    settings={"k": [1, 2]},
    choice="slow",
    choices=["b", "c"],
    number=9,
    where=Path("/data/in"),
    maybe="given",
    maybe_int=4,
    maybe_list=[1],
    maybe_dict={"z": 0},
    maybe_path=Path("/data/out"),
)


def only_task(texts: dict[str, str]) -> luigi.Task:
    graph = from_task(Everything).build(texts, from_text=True)
    (node,) = list(graph)
    # what the worker does: the task rebuilt from its family and its serialized parameters
    return rebuild(node.task.name, node.literals)


def test_every_stock_parameter_type_reaches_the_task_as_luigi_parses_it() -> None:
    task = only_task(TEXTS)
    assert task == Everything(**EXPECTED)
    assert task.task_id == Everything(**EXPECTED).task_id
    reference = Everything(**EXPECTED)  # lists and dicts as Luigi freezes them
    for name in EXPECTED:
        assert getattr(task, name) == getattr(reference, name), name
    assert task.every == dt.timedelta(days=2) and task.interval == Week(2019, 10)
    assert task.colours == (Colour.red, Colour.blue) and task.where == Path("/data/in")


def test_defaults_come_from_the_class_and_none_survives_the_worker() -> None:
    task = only_task({"text": "t", "count": "1", "flag": "false", "day": "2019-04-26"})
    assert task.maybe is None and task.maybe_path is None and task.maybe_list is None
    assert task.pair == (1, "a") and task.colour is Colour.red and task.interval == Week(2019, 17)


def test_native_types_are_conveyors_own_so_the_cli_and_ui_know_them() -> None:
    kinds = {p.name: p.type.name for p in from_task(Everything).params}
    assert kinds["count"] == "int" and kinds["ratio"] == "float" and kinds["flag"] == "bool"
    assert kinds["day"] == "date" and "logical_date" not in kinds  # several date parameters
    assert kinds["colour"] == "EnumParameter" and kinds["every"] == "TimeDeltaParameter"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("count", "seven", "expected an integer"),
        ("colour", "green", "not a valid EnumParameter"),
        ("choice", "medium", "not a valid ChoiceParameter"),
        ("number", "11", "not a valid NumericalParameter"),
        ("hour", "yesterday", "not a valid DateHourParameter"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_parameter(name: str, text: str, says: str) -> None:
    texts = {**TEXTS, name: text}
    with pytest.raises(ParameterError) as info:
        from_task(Everything).build(texts, from_text=True)
    message = str(info.value)
    assert f"parameter {name!r}" in message and says in message and "\n" not in message


class Dated(luigi.Task):
    day = luigi.DateParameter()
    size = luigi.IntParameter(default=1)


def test_logical_date_fills_the_one_date_parameter_for_backfills_and_schedules() -> None:
    pipe = from_task(Dated)
    (node,) = list(pipe.build({"logical_date": "2019-04-02"}, from_text=True))
    assert rebuild(node.task.name, node.literals) == Dated(day=dt.date(2019, 4, 2))
    (same,) = list(pipe.build({"day": "2019-04-02"}, from_text=True))
    assert same.id == node.id
    with pytest.raises(ParameterError, match="missing parameter day"):
        pipe.build({}, from_text=True)
    with pytest.raises(ParameterError, match="disagree"):
        pipe.build({"day": "2019-04-02", "logical_date": "2019-04-03"}, from_text=True)


class Hourly(luigi.Task):
    hour = luigi.DateHourParameter()


def test_an_hourly_class_takes_its_logical_date_as_a_datetime() -> None:
    pipe = from_task(Hourly)
    assert {p.name: p.type.name for p in pipe.params}["logical_date"] == "datetime"
    (node,) = list(pipe.build({"logical_date": "2019-04-26T07:00"}, from_text=True))
    assert rebuild(node.task.name, node.literals).hour == dt.datetime(2019, 4, 26, 7)
