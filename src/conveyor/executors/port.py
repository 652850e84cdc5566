"""The executor port: what the driver asks of any engine that runs attempts.

An executor launches attempts and reports how they ended; it never decides (the scheduling
core does). Each attempt runs Conveyor's runner wherever the engine puts it, and the runner
records its own start, heartbeats and end (in the store, or through the execution API with a
token scoped to its one attempt), so a result survives the loss of the executor, the engine's
scheduler and the Conveyor process that launched it. The executor's reports only speed things
up: the store stays the truth, and a new owner of a run *adopts* its attempts still running
from what their runners wrote.

Adapters are found by name in the ``conveyor.executors`` entry-point group (see
``conveyor.executors.load``); a third party adds one by declaring an entry point there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from conveyor.resources import Resources
from conveyor.runner import Job, Outcome


@dataclass(frozen=True, slots=True)
class Ticket:
    """How a runner on another machine reports: the execution API's address and a token that can
    write only this attempt's start, heartbeats, log, result and end. Never the store's URL."""

    api: str
    token: str
    #: The API is the launching process's own (``conveyor run`` with an engine on this machine):
    #: that process records the attempt from the engine's answer in its group commit, as it does
    #: for its local workers, so the runner writes nothing per attempt (its log goes straight to
    #: the run's log file; ``api`` and ``token`` are empty). The API would die with that process
    #: anyway.
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class Launch:
    """How to run one attempt, beside its ``Job``."""

    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    queueable: bool = False  # the local pool only: may wait behind a busy worker
    ticket: Ticket | None = None  # None: the runner writes to the store itself (this machine)
    executor: str = "local"  # which executor of a run's several (``executors.mux``)
    team: str = ""  # the run's team: its namespace, accounting group or queue on a shared cluster
    network: bool = False  # the task may reach the network (engines that isolate attempts)


@dataclass(frozen=True, slots=True)
class Lost:
    """The attempt ended without its runner's word: the engine says why (``reason``, in the
    engine's own terms). ``blameless``: it never started, or the engine went away, and it does
    not count against the task's retries."""

    job: Job
    reason: str
    timed_out: bool = False
    blameless: bool = False


@dataclass(frozen=True, slots=True)
class Unknown:
    """The engine lost track of the attempt (its scheduler died and dropped it): whether it still
    runs, ended or never started is for the store to tell. The driver adopts it."""

    job: Job
    reason: str


@dataclass(frozen=True, slots=True)
class Placed:
    """Where the engine has the attempt now, in its own terms, one line: "queued in Kueue
    (team-a): ...", "pulling image ...", "running on node n1". The driver records it on the
    attempt, so ``conveyor show``, the API and the UI say why it is not running yet."""

    job: Job
    where: str


Report = Outcome | Lost | Unknown | Placed


@runtime_checkable
class Executor(Protocol):
    """One engine's adapter. The driver calls it from one thread."""

    #: The entry point's name: ``local``, ``dask``, ``ray``, ``spark``, ...
    name: ClassVar[str]

    @property
    def prefetch(self) -> int:
        """Attempts the driver may hand over beyond the free cpu (0: the engine queues itself)."""
        ...

    @property
    def quick(self) -> bool:
        """Are attempts ending fast enough that handing over more than fits pays?"""
        ...

    @property
    def has_room(self) -> bool:
        """Could it start another attempt now (a scheduler claims more work while it can)?"""
        ...

    def check(self, resources: Resources) -> str | None:
        """Why no worker of this engine could ever run an attempt asking for ``resources``
        (one line), or None when one could. Called before any run exists."""
        ...

    def submit(self, job: Job, launch: Launch, now: float) -> None:
        """Launch the attempt (it is RUNNING in the store already)."""
        ...

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        """Stop the attempt: ask, then after ``grace`` seconds, kill."""
        ...

    def adopt(self, jobs: Sequence[Job]) -> None:
        """Attempts a previous owner launched that the store says run: let ``cancel`` reach
        them. Their ends come from the store, not from ``poll``."""
        ...

    def poll(self, timeout: float) -> Iterator[Report]:
        """Wait up to ``timeout`` seconds; yield what ended, was lost, or fell out of sight."""
        ...

    def next_deadline(self) -> float | None:
        """When the executor must be polled next (a timeout or a cancel's grace ends)."""
        ...

    def running(self) -> list[Job]:
        """Every attempt it holds: running, or waiting in the engine."""
        ...

    def drop(self, match: Callable[[Job], bool]) -> None:
        """Let go of the attempts ``match`` picks: those not started are taken back, those
        running run on and record their own ends; none is reported again."""
        ...

    def detach(self) -> None:
        """Let go of every attempt, as ``drop`` does, and of the engine."""
        ...

    def close(self, *, kill: bool = False) -> None:
        """Stop; with ``kill``, stop every attempt it holds first."""
        ...


#: What an adapter's constructor takes: ``workers`` (the local cpu the run may use), the folder
#: for its logs, the recorder a local runner writes with, and its settings (``[executor.NAME]``
#: in conveyor.toml, then ``CONVEYOR_NAME_KEY`` variables, then flags).
Factory = Callable[..., Executor]
Settings = Mapping[str, Any]
