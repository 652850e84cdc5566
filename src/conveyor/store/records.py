"""The records the store reads and writes: frozen rows, free of SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    pipeline: str  # the pipeline's name
    target: str  # how to load it: path/to/file.py:name or package.module:name
    params: dict[str, Any]  # canonical JSON of the pipeline's parameters
    key: str  # hash of target + params: "the same command"
    state: str  # pending | running | succeeded | failed | cancelled
    created_at: float
    workdir: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    owner: str | None = None
    epoch: int = 0
    lease_expires: float | None = None
    total: int = 0
    partitions: int = 0  # submitted to the schedulers in this many partitions; 0: driven by `run`
    cancel_requested: float | None = None  # a submitted run asked to stop (`conveyor cancel`)
    executor: str | None = None  # where its tasks run unless they say (submit --executor)
    team: str | None = None  # the team of the project it was created through
    created_by: str | None = None  # the user who created it
    image: str | None = None  # the container image its attempts ran in
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    run_id: str
    id: str
    task: str
    label: str
    params: dict[str, Any]
    upstream: list[str]
    state: str = "pending"
    attempts: int = 0
    failures: int = 0
    lost: int = 0
    not_before: float = 0.0
    priority: int = 0
    targets: list[str] = field(default_factory=list)
    result: str | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    partition: int = 0

    @property
    def untouched(self) -> bool:
        """Pending and never tried: exactly as a new run creates it."""
        return (
            self.state == "pending"
            and not (self.attempts or self.failures or self.lost or self.not_before)
            and self.result is None
            and self.error is None
            and self.started_at is None
            and self.ended_at is None
        )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    run_id: str
    instance_id: str
    number: int
    state: str  # running | succeeded | failed | lost | cancelled
    started_at: float
    ended_at: float | None = None
    error: str | None = None
    log_path: str | None = None
    worker: str | None = None
    heartbeat: float | None = None
    waited_for: str | None = None  # it took the outcome of this run's attempt of the same instance
    outputs: str | None = None  # JSON list: what its targets hold (see ``conveyor.targets``)
    placement: str | None = None  # where its engine has it (queued, pulling, on node n1)


@dataclass(frozen=True, slots=True)
class AttemptStatus:
    """An adopted attempt as the store sees it (see ``Attempts.attempt_status``)."""

    instance_id: str
    number: int
    state: str  # running | succeeded | failed | lost | cancelled
    started_at: float
    heartbeat: float | None
    error: str | None
    result: str | None


@dataclass(frozen=True, slots=True)
class Holder:
    """The attempt that holds a task instance id's claim (see ``store.claims``)."""

    run_id: str
    attempt: int
    owner: str  # host:pid of its runner
    expires: float
    state: str = "running"  # succeeded: it ended after the asking run was created; take it
    result: str | None = None


#: Seconds a claim holds without renewal: a runner renews it with every heartbeat.
CLAIM_TTL = 10.0

#: ``begin_attempt``'s answer when the attempt is no longer current (a new owner declared it
#: lost, or it was cancelled): the runner must not start it.
STALE = "stale"


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """A part of a submitted run's graph and its lease: one scheduler drives it at a time."""

    run_id: str
    number: int
    size: int
    needs: list[int] = field(default_factory=list)  # partitions whose instances it depends on
    state: str = "open"  # open | done | failed | blocked | cancelled
    owner: str | None = None
    epoch: int = 0
    lease_expires: float | None = None
    takeovers: int = 0  # claims of an expired lease: its owner had died or stalled
    taken_from: str | None = None
    taken_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SchedulerRecord:
    name: str
    host: str
    pid: int
    started_at: float
    heartbeat: float
    state: str  # running | stopped
    workers: int = 0


@dataclass(frozen=True, slots=True)
class BackfillRecord:
    """A backfill: one run per logical date of a range (``backfills``)."""

    id: str
    pipeline: str
    target: str
    params: dict[str, Any]  # besides logical_date, as canonical JSON
    every: str  # day | hour | week | month
    max_parallel: int
    state: str  # running | succeeded | failed | cancelled
    created_at: float
    slots: list[dict[str, Any]]  # per date: when (ISO), key, run (id or None), state, retried
    workdir: str = ""
    ended_at: float | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    instance_id: str
    old: str
    new: str
    at: float
    cause: str
    attempt: int


@dataclass(slots=True)
class Batch:
    """Everything one turn of the driver persists, in one transaction (group commit)."""

    instances: list[dict[str, Any]] = field(default_factory=list)  # id + changed columns
    attempts_started: list[AttemptRecord] = field(default_factory=list)
    attempts_ended: list[dict[str, Any]] = field(default_factory=list)  # instance_id, number, ...
    transitions: list[TransitionRecord] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # changed run columns
    # `conveyor run`'s claims of instance ids (``store.claims``), in the same transaction: its
    # owner (host:pid; None: no claims), the attempts it starts, and those that ended (instance,
    # attempt, state, result, ended_at); its run's other claims are renewed.
    claim_owner: str | None = None
    claim_start: list[tuple[str, int]] = field(default_factory=list)
    claim_end: list[tuple[str, int, str, str | None, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.instances or self.attempts_started or self.attempts_ended or self.transitions or self.run
        )


# -- people (``store.people``, ``conveyor.auth``) ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    admin: bool
    created_at: float
    disabled_at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str  # short and public: how a token is listed and revoked
    user: str
    hash: str  # sha256 of the secret, hex; the secret itself is never stored
    created_at: float
    label: str = ""
    kind: str = "api"  # api | session (the web UI's, behind a cookie)
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class TeamRecord:
    name: str
    created_at: float
    weight: float = 1.0
    quota: dict[str, Any] = field(default_factory=dict)  # {"limits": {...}, "runs": N, ...}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: float
    actor: str  # a user, or local:<os user> for a command on the store itself
    action: str  # users.add, tokens.create, runs.trigger, ...
    team: str | None
    target: str
    detail: str
