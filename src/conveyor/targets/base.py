"""What every output target is to Conveyor: something whose existence means "done", which a task
writes through a staged handle that the runner makes final only after the task returned.

The runner's part, for each target of an attempt: ``stage`` before the task runs (the handle
``conveyor.output()`` gives the task), ``finish`` after it returned (make the work visible, all
or nothing, and say what was written: the *fingerprint* the run record keeps), ``abandon``
when it did not. The driver's part: ``check`` when a run is prepared (is the target usable from
every process, is its extra installed, is its store reachable) and ``done_among`` to decide which
of many targets exist in one listing or query per store rather than one call each.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import TargetError


@dataclass(frozen=True, slots=True)
class Writer:
    """Which attempt writes a target: kept beside the data where the store allows it (a table
    target's marker row), so that "done" names the attempt that did it."""

    run_id: str
    instance: str
    attempt: int


#: A target written outside any run (a task called as a plain function).
DIRECT = Writer("", "", 0)


class NotWritten(TargetError):
    """A task returned without writing one of its targets (the message reads after "task X ")."""


class Output:
    """Base of the output targets a task can declare (``FileTarget``, ``TableTarget``)."""

    __slots__ = ()

    #: Commit order within one attempt: files first, database transactions last, so that a
    #: crash between them leaves the transaction (the "done" that counts) unwritten.
    order = 0

    def exists(self) -> bool:
        raise NotImplementedError

    # -- templates --------------------------------------------------------------------------
    def templates(self) -> Sequence[str]:
        """The template strings in this target (their ``{fields}`` must be task parameters)."""
        return ()

    def render(self, values: Mapping[str, Any]) -> Output:
        """This target with its templates filled in from a task's parameter values."""
        return self

    # -- the driver's part --------------------------------------------------------------------
    def check(self) -> None:
        """Raise ``TargetError`` (one line) unless every process of a run can use this target."""

    def bulk_key(self) -> Hashable | None:
        """Targets with the same key are decided together by ``done_among`` (None: one by one)."""
        return None

    @classmethod
    def done_among(cls, targets: Sequence[Output]) -> set[Output]:
        """Those of ``targets`` (all of this class, one ``bulk_key``) that exist."""
        return {t for t in targets if t.exists()}

    # -- the runner's part --------------------------------------------------------------------
    def stage(self, *, replace: bool = False) -> Any:
        """The handle the task writes through while it runs."""
        raise NotImplementedError

    def finish(self, staged: Any, writer: Writer) -> dict[str, Any] | None:
        """Make what the task wrote through ``staged`` final; its fingerprint (what was written)."""
        raise NotImplementedError

    def abandon(self, staged: Any) -> None:
        """Drop what was staged: the task failed, or was cancelled."""

    def describe(self) -> str:
        """How the run record and the UI name this target (no credentials)."""
        return str(self)
