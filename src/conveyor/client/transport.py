"""What the client asks of Conveyor (``Transport``: the service's methods, over a store or over
HTTP), and values to and from the wire: parameters in the form the service parses, results
decoded."""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import pickle
from collections.abc import Mapping
from typing import Any, Protocol

from conveyor.errors import LoadError, ParameterError
from conveyor.service import Artifact
from conveyor.views import (
    BackfillView,
    GraphView,
    Health,
    LogView,
    PipelineView,
    RunDetail,
    RunPage,
    RunView,
    SchedulerView,
    ScheduleView,
)


class Transport(Protocol):
    """``Service``'s methods (``conveyor.service``), over the local store or a server's REST API."""

    def pipelines(self) -> list[PipelineView]: ...
    def pipeline(self, name: str) -> PipelineView: ...
    def reload(self) -> list[PipelineView]: ...
    def trigger(self, name: str, params: Mapping[str, Any]) -> RunView: ...
    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> RunPage: ...
    def run(self, run_id: str, *, tasks: bool = True) -> RunDetail: ...
    def cancel(self, run_id: str) -> RunView: ...
    def graph(self, run_id: str, group: str = "auto") -> GraphView: ...
    def retry(self, run_id: str) -> RunView: ...
    def logs(
        self, run_id: str, task: str | None = None, *, attempt: int | None = None, tail: int | None = None
    ) -> list[LogView]: ...
    def result(self, run_id: str, task: str) -> Artifact: ...
    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        every: str = "day",
        max_parallel: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> BackfillView: ...
    def backfills(self, *, state: str | None = None, limit: int = 50) -> list[BackfillView]: ...
    def get_backfill(self, backfill_id: str) -> BackfillView: ...
    def cancel_backfill(self, backfill_id: str) -> BackfillView: ...
    def schedules(self) -> list[ScheduleView]: ...
    def pause(self, pipeline: str, paused: bool = True) -> ScheduleView: ...
    def schedulers(self) -> list[SchedulerView]: ...
    def health(self) -> Health: ...
    def kick(self, *, submitted: bool = False, backfill: str | None = None) -> None:
        """Make sure submitted work moves: locally, that a scheduler runs (and ``backfill`` is
        stepped); a server runs its own. ``submitted``: work was just submitted."""

    def close(self) -> None: ...


def wire(value: Any, *, top: bool = True) -> Any:
    """A parameter's value in the form the service parses (``from_text``): dates as ISO text,
    enums by value (as text at the top level), paths as text, tuples and sets as lists; plain
    JSON values as they are. Raises TypeError for anything else."""
    if isinstance(value, enum.Enum):
        return str(value.value) if top else wire(value.value, top=False)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [wire(v, top=False) for v in items]
    if isinstance(value, Mapping):
        return {str(k): wire(v, top=False) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(type(value).__name__)


def wire_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``wire`` for each parameter; a value that cannot be sent is a ParameterError naming it."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        try:
            out[name] = wire(value)
        except TypeError as exc:
            raise ParameterError(
                f"parameter {name!r}: a {exc} cannot be sent; give a number, text, bool, date, "
                "datetime, path, enum, or a list of these",
                {name: f"a {exc} cannot be sent"},
            ) from None
    return out


def when(value: str | dt.date, field: str) -> str:
    """A backfill's first or last logical date as the service reads it."""
    if isinstance(value, dt.date):  # a datetime too
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise ParameterError(f"{field} must be a date, a datetime or text like 2026-11-01", {field: "not a date"})


def moment(value: str | dt.date | None, field: str) -> dt.datetime | None:
    """A filter's time: a datetime, a date (its midnight) or ISO text."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{field} {value!r} is not a time; give a datetime or text like 2026-11-01T06:00",
            {field: "not a time"},
        ) from None


def decode(artifact: Artifact, what: str) -> Any:
    """A stored result as a Python value: JSON decoded, a pickle unpickled. Unpickling runs code
    the pickle names: load results only from a store or a server you trust."""
    if artifact.media_type == "application/json":
        return json.loads(artifact.data)
    try:
        return pickle.loads(artifact.data)
    except (ModuleNotFoundError, AttributeError) as exc:
        hint = "import the module that defines its class here, or return plain values"
        if "conveyor_user_" in str(exc):  # a class defined in a pipeline file loaded by its path
            hint = "define its class in an importable module (not in a pipeline file), or return plain values"
        raise LoadError(
            f"the result of {what} is a pickle of an object this process cannot import ({exc}); {hint}"
        ) from None
