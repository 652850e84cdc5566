"""The store: the durable source of truth, behind one small interface.

``Store`` is the port; ``SqlStore`` (SQLAlchemy Core; SQLite in WAL mode by default) is its
adapter. Only this package knows SQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.store.records import (
    AttemptRecord,
    AuditRecord,
    BackfillRecord,
    Batch,
    InstanceRecord,
    PartitionRecord,
    RunRecord,
    SchedulerRecord,
    TeamRecord,
    TokenRecord,
    TransitionRecord,
    UserRecord,
)

if TYPE_CHECKING:
    from conveyor.store.attempts import AttemptStatus
    from conveyor.store.leases import Claim
    from conveyor.store.ledger import Held, Waiting
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
    def get_run(self, run_id: str, *, teams: Sequence[str] | None = None) -> RunRecord: ...
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
        teams: Sequence[str] | None = None,
    ) -> list[RunRecord]: ...
    def count_runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
        teams: Sequence[str] | None = None,
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
    def place_attempt(self, run_id: str, instance_id: str, number: int, where: str) -> None: ...
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

    # team quotas (``ledger``)
    def hold(
        self, held: Held, limits: Mapping[str, int], capacity: Mapping[str, int] | None = None
    ) -> bool: ...
    def give_back(
        self,
        keys: Sequence[tuple[str, str, int]],
        now: float,
        charge: Callable[[Held, float], float] | None = None,
        half_life: float = 3600.0,
    ) -> int: ...
    def sweep_holdings(
        self,
        now: float,
        *,
        unused_after: float = 60.0,
        charge: Callable[[Held, float], float] | None = None,
        half_life: float = 3600.0,
    ) -> int: ...
    def holdings(self, team: str | None = None) -> list[Held]: ...
    def in_use(self) -> dict[str, dict[str, int]]: ...
    def team_quota_rows(self) -> dict[str, tuple[float, dict[str, Any]]]: ...
    def open_runs(self) -> dict[str, set[str]]: ...
    def publish_waiting(self, scheduler: str, rows: Sequence[Waiting], now: float) -> None: ...
    def waiting(self, fresh_after: float) -> list[Waiting]: ...
    def set_waits(self, run_id: str, waits: Mapping[str, tuple[str, str]], now: float) -> None: ...
    def clear_waits(self, run_id: str, instances: Sequence[str] | None = None) -> None: ...
    def waits(self, run_id: str) -> dict[str, tuple[str, str, float]]: ...
    def usage(self, now: float, half_life: float = 3600.0) -> dict[tuple[str, str], float]: ...
    # people: users, tokens, teams, members, the audit (``people``)
    def count_users(self) -> int: ...
    def add_user(self, name: str, *, admin: bool, now: float) -> UserRecord: ...
    def get_user(self, name: str) -> UserRecord | None: ...
    def list_users(self) -> list[UserRecord]: ...
    def disable_user(self, name: str, now: float) -> UserRecord: ...
    def add_token(self, rec: TokenRecord) -> None: ...
    def token_by_hash(self, digest: str) -> tuple[TokenRecord, UserRecord] | None: ...
    def list_tokens(self, user: str | None = None) -> list[TokenRecord]: ...
    def get_token(self, token_id: str) -> TokenRecord | None: ...
    def revoke_token(self, token_id: str, now: float) -> TokenRecord: ...
    def touch_token(self, token_id: str, now: float, *, every: float = 60.0) -> None: ...
    def drop_sessions(self, now: float) -> int: ...
    def add_team(self, name: str, *, weight: float = 1.0, now: float) -> TeamRecord: ...
    def get_team(self, name: str) -> TeamRecord | None: ...
    def list_teams(self) -> list[TeamRecord]: ...
    def set_team(
        self, name: str, *, weight: float | None = None, quota: Mapping[str, Any] | None = None
    ) -> TeamRecord: ...
    def grant(self, team: str, user: str, role: str) -> None: ...
    def revoke(self, team: str, user: str) -> None: ...
    def members(self, team: str) -> list[tuple[str, str]]: ...
    def roles_of(self, user: str) -> dict[str, str]: ...
    def record_audit(
        self, actor: str, action: str, *, team: str | None, target: str, detail: str = "", now: float
    ) -> None: ...
    def audit_log(
        self, *, teams: Sequence[str] | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AuditRecord]: ...


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
    "AuditRecord",
    "BackfillRecord",
    "Batch",
    "InstanceRecord",
    "PartitionRecord",
    "RunRecord",
    "SchedulerRecord",
    "Store",
    "TeamRecord",
    "TokenRecord",
    "TransitionRecord",
    "UserRecord",
    "default_url",
    "home",
    "open_embedded",
    "open_store",
]
