"""The store: the durable source of truth, behind one small interface.

``Store`` is the port; ``SqlStore`` (SQLAlchemy Core; SQLite in WAL mode by default) is its
adapter. Only this package knows SQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.store.records import (
    AttemptRecord,
    BackfillRecord,
    Batch,
    InstanceRecord,
    PartitionRecord,
    RunRecord,
    SchedulerRecord,
    TransitionRecord,
)

if TYPE_CHECKING:
    from conveyor.store.attempts import AttemptStatus
    from conveyor.store.leases import Claim
    from conveyor.store.records import Holder
    from conveyor.store.stats import StoreStats


class Store(Protocol):
    url: str

    def create_run(
        self,
        run: RunRecord,
        instances: Sequence[InstanceRecord],
        partitions: Sequence[PartitionRecord] = (),
    ) -> None: ...
    def add_instances(self, run_id: str, instances: Sequence[InstanceRecord]) -> None: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def latest_run(self, key: str) -> RunRecord | None: ...
    def list_runs(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        pipeline: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RunRecord]: ...
    def count_runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int: ...
    def instances(self, run_id: str) -> list[InstanceRecord]: ...
    def attempts(self, run_id: str, instance_id: str | None = None) -> list[AttemptRecord]: ...
    def history(self, run_id: str, instance_id: str) -> list[TransitionRecord]: ...
    def acquire(
        self,
        run_id: str,
        owner: str,
        ttl: float,
        *,
        is_dead: Callable[[str], bool] | None = None,
        now: float | None = None,
    ) -> int: ...
    def release(self, run_id: str, epoch: int) -> None: ...
    def supersede(self, run_id: str, reason: str, now: float | None = None) -> None: ...
    def commit(
        self, run_id: str, epoch: int, batch: Batch, *, lease_until: float, partition: int | None = None
    ) -> dict[str, Holder]: ...
    def close(self) -> None: ...

    # several schedulers (``leases``)
    def partitions(self, run_id: str) -> list[PartitionRecord]: ...
    def claim(
        self, owner: str, ttl: float, *, now: float | None = None, takeover_only: bool = False
    ) -> Claim | None: ...
    def end_partition(
        self, run_id: str, number: int, epoch: int, state: str, error: str | None = None
    ) -> str | None: ...
    def release_partition(self, run_id: str, number: int, epoch: int) -> None: ...
    def request_cancel(self, run_id: str, now: float | None = None) -> str: ...
    def cancel_requested(self, run_id: str) -> bool: ...
    def reopen(self, run_id: str) -> int: ...
    def record_attempt(
        self,
        run_id: str,
        instance_id: str,
        number: int,
        state: str,
        *,
        ended_at: float,
        result: str | None = None,
        error: str | None = None,
        waited_for: str | None = None,
        outputs: str | None = None,
    ) -> bool: ...

    # one attempt of an instance id at a time, across runs (``claims``)
    def begin_attempt(
        self,
        run_id: str,
        instance_id: str,
        number: int,
        owner: str,
        now: float,
        *,
        ttl: float = ...,
        take_from: tuple[str, int] | None = None,
    ) -> Holder | str | None: ...
    def beat_attempt(
        self, run_id: str, instance_id: str, number: int, now: float, ttl: float = ...
    ) -> bool: ...
    def claim_of(self, instance_id: str) -> Holder | None: ...
    def waiting_on(self, instance_id: str, holder: Holder) -> tuple[Holder | None, AttemptStatus | None]: ...
    def declare_lost(self, run_id: str, instance_id: str, number: int, now: float, reason: str) -> bool: ...
    def attempt_status(self, run_id: str, keys: Sequence[tuple[str, int]]) -> list[AttemptStatus]: ...
    def ended_logs(self, before: float) -> list[tuple[str, str]]: ...
    def schedule_cursor(self, pipeline: str, now: float) -> float: ...
    def fire(
        self,
        pipeline: str,
        last: float,
        tick: float,
        runs: Sequence[tuple[RunRecord, Sequence[InstanceRecord], Sequence[PartitionRecord]]],
    ) -> bool: ...
    def register_scheduler(self, rec: SchedulerRecord, *, stale_after: float) -> None: ...
    def beat(self, name: str, now: float, *, state: str = "running") -> None: ...
    def schedulers(self) -> list[tuple[SchedulerRecord, list[PartitionRecord]]]: ...
    def forget_schedulers(self, before: float) -> int: ...
    def pause_schedule(self, pipeline: str, paused: bool, now: float) -> None: ...
    def schedule_states(self) -> dict[str, tuple[float, float | None]]: ...

    # backfills (``backfilling``)
    def create_backfill(self, rec: BackfillRecord) -> None: ...
    def get_backfill(self, backfill_id: str) -> BackfillRecord: ...
    def list_backfills(self, *, limit: int | None = 50, state: str | None = None) -> list[BackfillRecord]: ...
    def advance_backfill(
        self,
        rec: BackfillRecord,
        *,
        slots: list[dict[str, Any]],
        state: str,
        runs: Sequence[tuple[RunRecord, Sequence[InstanceRecord], Sequence[PartitionRecord]]] = (),
        reopen: Sequence[str] = (),
        now: float | None = None,
    ) -> bool: ...
    def run_states(self, run_ids: Sequence[str]) -> dict[str, str]: ...

    # what the web UI polls (``changes``)
    def changes(self, run_id: str, since: int) -> tuple[int, list[InstanceRecord]]: ...

    # the execution API's signing keys (``keys``)
    def signing_key(self, now: float, rotate_after: float, keep_for: float) -> tuple[str, bytes]: ...
    def verifying_key(self, kid: str) -> bytes | None: ...

    # figures for /metrics (``stats``)
    def stats(self, buckets: Sequence[float]) -> StoreStats: ...


def home() -> Path:
    """Where Conveyor keeps its store, logs and artifacts: ``$CONVEYOR_HOME`` or ``.conveyor``."""
    return Path(os.environ.get("CONVEYOR_HOME", ".conveyor")).absolute()


def default_url() -> str:
    return os.environ.get("CONVEYOR_DB") or f"sqlite:///{home() / 'conveyor.db'}"


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open the store at ``url`` (default: ``$CONVEYOR_DB``, else ``.conveyor/conveyor.db``)."""
    from conveyor.store.sql import SqlStore

    return SqlStore(url or default_url(), migrate=migrate)


def open_embedded(url: str | None = None) -> Store:
    """The store of a run driven in this process (``conveyor run``, ``conveyor.run``): as
    ``open_store``, but a SQLite file is read and written without SQLAlchemy (``lite``)."""
    from conveyor.store.lite import open_lite

    return open_lite(url or default_url())


__all__ = [
    "AttemptRecord",
    "BackfillRecord",
    "Batch",
    "InstanceRecord",
    "PartitionRecord",
    "RunRecord",
    "SchedulerRecord",
    "Store",
    "TransitionRecord",
    "default_url",
    "home",
    "open_embedded",
    "open_store",
]
