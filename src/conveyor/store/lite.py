"""The embedded run's store: SQLite through the standard library's ``sqlite3``, no SQLAlchemy.

``conveyor run`` reads and writes a handful of statements: find the last run of the same
command, create a run and its instances, read them back, take the run's lease, the group
commit, give the lease back. Importing SQLAlchemy to compile them cost more than the whole run
of a small pipeline, so here they are SQL text, written once, the same text SQLAlchemy compiles
for SQLite (tests/store/test_lite.py compares them), run on a DBAPI cursor like ``SqlStore``'s
hot path. A new database gets the schema from ``sqlite_ddl`` (generated from ``schema``).

Everything else a ``Store`` does (listing runs, partitions, backfills...) is passed to a
``SqlStore`` on the same file, opened on first use. A database whose schema is not the one
``sqlite_ddl`` was generated from is left to ``SqlStore`` altogether (``open_lite``): it
creates, refuses or names the upgrade with the usual messages.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import ids
from conveyor.errors import RunBusy, RunExists, RunNotFound, StaleEpochError, StoreError
from conveyor.store import sqlite_ddl as ddl
from conveyor.store.cache import LiteCacheEntries
from conveyor.store.checkpoint import Checkpointer
from conveyor.store.connection import HELD_CONNECTIONS, Transaction, sqlite_pragmas
from conveyor.store.lite_attempts import LiteAttempts
from conveyor.store.lite_provenance import LiteProvenances
from conveyor.store.records import (
    Batch,
    Holder,
    InstanceRecord,
    PartitionRecord,
    RunRecord,
)
from conveyor.store.rows import attempt_row, instance_record, instance_row, run_record, run_row, shapes

if TYPE_CHECKING:
    from conveyor.store import Store
    from conveyor.store.sql import SqlStore


def _cols(table: str, cols: Sequence[str]) -> str:
    return ", ".join(f'{table}."key"' if c == "key" else f"{table}.{c}" for c in cols)


def _insert(table: str, cols: Sequence[str]) -> str:
    names = ", ".join('"key"' if c == "key" else c for c in cols)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"


def update(table: str, values: Sequence[str], where: Sequence[str]) -> str:
    """``UPDATE table SET values... WHERE where...``, as SQLAlchemy writes it for SQLite."""
    sets = ", ".join(f"{c}=?" for c in values)
    return f"UPDATE {table} SET {sets} WHERE {' AND '.join(f'{table}.{c} = ?' for c in where)}"


_INSTANCE_COLS = tuple(c for c in ddl.INSTANCE_COLUMNS if c != "seq")
_CHANGED = " OR ".join(
    [f"task_instances.{c} != ?" for c in ("state", "attempts", "failures", "lost", "not_before")]
    + [f"task_instances.{c} IS NOT NULL" for c in ("result", "error", "started_at", "ended_at")]
)

#: The fixed statements, by the keys ``SqlStore`` caches them under (the tests compare the two).
SQL = {
    "stamp": "INSERT INTO alembic_version (version_num) VALUES (?)",
    "insert_run": _insert("runs", ddl.RUN_COLUMNS),
    "insert_instance": _insert("task_instances", ddl.INSTANCE_COLUMNS),
    "insert_attempt": _insert("attempts", ddl.ATTEMPT_COLUMNS),
    "insert_transition": _insert("transitions", ddl.TRANSITION_COLUMNS),
    "latest_run": f"SELECT {_cols('runs', ddl.RUN_COLUMNS)} \nFROM runs \n"
    'WHERE runs."key" = ? ORDER BY runs.created_at DESC\n LIMIT ? OFFSET ?',
    "counts": "SELECT task_instances.state, count(*) AS count_1 \nFROM task_instances \n"
    "WHERE task_instances.run_id = ? GROUP BY task_instances.state",
    "untouched": f"SELECT count(*) AS count_1, count(*) FILTER (WHERE {_CHANGED}) AS anon_1 \n"
    "FROM task_instances \nWHERE task_instances.run_id = ?",
    "count_instances": "SELECT count(*) AS count_1 \nFROM task_instances \nWHERE task_instances.run_id = ?",
    "grow_run": "UPDATE runs SET total=(runs.total + ?) WHERE runs.id = ?",
    "select_instances": f"SELECT {_cols('task_instances', _INSTANCE_COLS)} \nFROM task_instances \n"
    "WHERE task_instances.run_id = ? ORDER BY task_instances.seq",
    "lease": "SELECT runs.owner, runs.epoch, runs.lease_expires \nFROM runs \nWHERE runs.id = ?",
    "take": update("runs", ("owner", "epoch", "lease_expires"), ("id", "epoch")),
    "release": update("runs", ("owner", "lease_expires"), ("id", "epoch")),
}
_GET_RUN = f"SELECT {_cols('runs', ddl.RUN_COLUMNS)} FROM runs WHERE runs.id = ?"
_RUN_PREFIX = f"SELECT {_cols('runs', ddl.RUN_COLUMNS)} FROM runs WHERE runs.id LIKE ? ESCAPE '/' LIMIT 2"


class Elsewhere(Exception):
    """This database is not for ``LiteStore``: not at the schema ``sqlite_ddl`` describes."""


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///path`` URL; None for anything else (memory, options)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else path


_VERSIONS = Path(__file__).with_name("migrations") / "versions"


def generated_is_current() -> bool:
    """Was ``sqlite_ddl`` generated from the newest migration? Not while a schema change waits
    for ``python -m conveyor.store.statements``: then ``SqlStore`` knows the schema better."""
    try:
        newest = max(n for n in os.listdir(_VERSIONS) if n[:4].isdigit() and n.endswith(".py"))
    except (OSError, ValueError):
        return False
    return newest.startswith(f"{ddl.REVISION}_")


def open_lite(url: str) -> Store:
    """The store for an embedded run: ``LiteStore`` for a SQLite file at the current schema,
    else ``SqlStore`` (which creates, migrates or refuses it as usual)."""
    path = sqlite_path(url)
    if path is not None and generated_is_current():
        try:
            return LiteStore(url, path)  # the rest of Store: __getattr__
        except Elsewhere:
            pass
    from conveyor.store.sql import SqlStore

    return SqlStore(url)


class LiteStore(LiteAttempts, LiteProvenances, LiteCacheEntries):
    """The embedded run's reads and writes on ``sqlite3``; the rest of ``Store`` on a ``SqlStore``."""

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self._path = path
        self._local = threading.local()
        self._held: list[sqlite3.Connection] = []
        self._held_lock = threading.Lock()
        self._dbapi_error: type[Exception] = sqlite3.Error
        self._created: dict[str, list[InstanceRecord]] = {}  # as ``SqlStore._created``
        self._updates: dict[tuple[str, ...], str] = {}
        self._full: SqlStore | None = None
        self._checkpointer: Checkpointer | None = None
        db = Path(path)
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            fresh = not db.exists() or db.stat().st_size == 0
        except OSError as exc:
            raise StoreError(
                f"cannot open store {url}: {exc.strerror or exc}; give a --db path in a directory "
                "you can write"
            ) from None
        try:
            if fresh:
                self._create()
            else:
                self._check_schema()
        except BaseException:
            self.close()
            raise
        self._checkpointer = Checkpointer(self)

    # -- plumbing, as ``SqlStore``'s (``Transaction`` calls these) -----------------------------
    def raw_connection(self) -> sqlite3.Connection:
        try:
            raw = sqlite3.connect(self._path, check_same_thread=False)
            sqlite_pragmas(raw, None)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return raw

    def _cursor(self) -> Transaction:
        return Transaction(self)  # type: ignore[arg-type]  # the few members of SqlStore's it uses

    def _connection(self) -> tuple[Any, bool]:
        raw = getattr(self._local, "raw", None)
        if raw is not None:
            return raw, True
        raw = self.raw_connection()
        with self._held_lock:
            keep = len(self._held) < HELD_CONNECTIONS
            if keep:
                self._held.append(raw)
                self._local.raw = raw
        return raw, keep

    def _broken(self, raw: Any) -> None:
        if getattr(self._local, "raw", None) is raw:
            self._local.raw = None
            with self._held_lock:
                if raw in self._held:
                    self._held.remove(raw)
        raw.close()

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.Error):
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return StoreError(f"store {self.url}: {msg}")
        return exc

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._held_lock:
            held, self._held = self._held, []
        for raw in held:
            raw.close()
        self._local = threading.local()
        if self._full is not None:
            self._full.close()
            self._full = None

    def __getattr__(self, name: str) -> Any:
        """What this store does not do itself, a ``SqlStore`` on the same file does."""
        if name.startswith("__") or name in ("_full", "_path", "_local", "_held", "_held_lock"):
            raise AttributeError(name)
        if self._full is None:
            from conveyor.store.sql import SqlStore

            self._full = SqlStore(self.url, migrate=False, check=False)
        return getattr(self._full, name)

    # -- schema -------------------------------------------------------------------------------
    def _create(self) -> None:
        """A new file gets the schema at once, stamped (as ``SqlStore._create`` on SQLite)."""
        with self._cursor() as cur:
            cur.execute("BEGIN IMMEDIATE")  # the write lock first: other processes wait here
            cur.execute("SELECT count(*) FROM sqlite_master")
            empty = cur.fetchone()[0] == 0
            if empty:
                for statement in ddl.DDL:
                    cur.execute(statement)
                cur.execute(SQL["stamp"], (ddl.REVISION,))
        if not empty:
            self._check_schema()

    def _check_schema(self) -> None:
        try:
            with self._cursor() as cur:
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
        except StoreError:
            raise Elsewhere from None  # no such table, not a database...: SqlStore says what
        if row is None or row[0] != ddl.REVISION:
            raise Elsewhere

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        run: RunRecord,
        instances: Sequence[InstanceRecord],
        partitions: Sequence[PartitionRecord] = (),
    ) -> None:
        if partitions:
            self.__getattr__("create_run")(run, instances, partitions)
            return
        with self._cursor() as cur:
            try:
                cur.execute(SQL["insert_run"], run_row(run))
            except sqlite3.IntegrityError as exc:
                if "key" not in str(exc):
                    raise
                raise RunExists(
                    f"an unfinished run of {run.pipeline} with the same parameters exists in "
                    f"{self.url}; follow it, or cancel it to start anew",
                    None,
                ) from None
            self._insert_instances(cur, instances, start=0)
        if all(r.untouched for r in instances):
            self._created[run.id] = list(instances)

    def add_instances(self, run_id: str, instances: Sequence[InstanceRecord]) -> None:
        self._created.pop(run_id, None)
        with self._cursor() as cur:
            cur.execute(SQL["count_instances"], (run_id,))
            seq = cur.fetchone()[0]
            cur.execute(SQL["grow_run"], (len(instances), run_id))
            self._insert_instances(cur, instances, start=seq)

    def _insert_instances(self, cur: Any, rows: Sequence[InstanceRecord], start: int) -> None:
        if rows:
            cur.executemany(SQL["insert_instance"], [instance_row(r, start + i) for i, r in enumerate(rows)])

    def latest_run(self, key: str) -> RunRecord | None:
        with self._cursor() as cur:
            cur.execute(SQL["latest_run"], (key, 1, 0))
            row = cur.fetchone()
            if row is None:
                return None
            found = dict(zip(ddl.RUN_COLUMNS, row, strict=True))
            return run_record(found, self._counts(cur, found["id"]))

    def get_run(self, run_id: str, *, teams: Sequence[str] | None = None) -> RunRecord:
        """The run with this id, or the only one whose id starts with it (``teams``: among the
        runs of these teams, which ``SqlStore`` looks up)."""
        if not ids.plausible(run_id):  # never asked of the store: no LIKE of 70,000 characters
            raise RunNotFound(f"no run {ids.shown(run_id)!r}: {ids.RULE}; see: conveyor runs")
        if teams is not None:
            among: RunRecord = self.__getattr__("get_run")(run_id, teams=teams)
            return among
        with self._cursor() as cur:
            cur.execute(_GET_RUN, (run_id,))
            row = cur.fetchone()
            if row is None and run_id:
                escaped = run_id.replace("/", "//").replace("%", "/%").replace("_", "/_")
                cur.execute(_RUN_PREFIX, (escaped + "%",))
                found = cur.fetchall()
                if len(found) == 2:
                    raise RunNotFound(f"run id {run_id!r} is ambiguous; give more of it")
                row = found[0] if found else None
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.url}; see: conveyor runs")
            record = dict(zip(ddl.RUN_COLUMNS, row, strict=True))
            return run_record(record, self._counts(cur, record["id"]))

    def _counts(self, cur: Any, run_id: str) -> dict[str, int]:
        cur.execute(SQL["counts"], (run_id,))
        return {str(st): int(n) for st, n in cur.fetchall()}

    def _untouched(self, run_id: str, total: int) -> bool:
        with self._cursor() as cur:
            cur.execute(SQL["untouched"], ("pending", 0, 0, 0, 0, run_id))  # the FILTER's binds come first
            rows, touched = cur.fetchone()
        return bool(rows == total and not touched)

    def instances(self, run_id: str) -> list[InstanceRecord]:
        created = self._created.pop(run_id, None)
        if created is not None and self._untouched(run_id, len(created)):
            return created  # just created here, and nobody has changed a row since
        with self._cursor() as cur:
            cur.execute(SQL["select_instances"], (run_id,))
            rows = cur.fetchall()
        return [instance_record(r) for r in rows]

    # -- the run's lease ----------------------------------------------------------------------
    def acquire(
        self,
        run_id: str,
        owner: str,
        ttl: float,
        *,
        is_dead: Callable[[str], bool] | None = None,
        now: float | None = None,
    ) -> int:
        """Take the run's lease (epoch + 1) if it is free, expired, or its owner is dead."""
        now = time.time() if now is None else now
        with self._cursor() as cur:
            cur.execute(SQL["lease"], (run_id,))
            row = cur.fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.url}")
            cur_owner, epoch, expires = row
            live = cur_owner and expires is not None and expires > now
            if live and not (is_dead and is_dead(cur_owner)):
                raise RunBusy(
                    f"run {run_id} is being driven by {cur_owner} (lease until "
                    f"{time.strftime('%H:%M:%S', time.localtime(expires))}); wait for it to end "
                    "or stop that process",
                    run_id,
                    cur_owner,
                )
            cur.execute(SQL["take"], (owner, epoch + 1, now + ttl, run_id, epoch))
            if cur.rowcount != 1:
                raise RunBusy(f"run {run_id} was taken by another process just now; try again", run_id, "")
            return int(epoch) + 1

    def release(self, run_id: str, epoch: int) -> None:
        with self._cursor() as cur:
            cur.execute(SQL["release"], (None, None, run_id, epoch))

    def supersede(self, run_id: str, reason: str, now: float | None = None) -> None:
        with self._cursor() as cur:
            cur.execute(_SUPERSEDE, (reason, time.time() if now is None else now, run_id))

    def cancel_requested(self, run_id: str) -> bool:
        with self._cursor() as cur:
            cur.execute("SELECT runs.cancel_requested \nFROM runs \nWHERE runs.id = ?", (run_id,))
            row = cur.fetchone()
        return row is not None and row[0] is not None

    # -- the group commit ---------------------------------------------------------------------
    def _update(self, shape: tuple[str, ...], table: str, values: Sequence[str], where: Sequence[str]) -> str:
        text = self._updates.get(shape)
        if text is None:
            text = self._updates[shape] = update(table, values, where)
        return text

    def commit(
        self, run_id: str, epoch: int, batch: Batch, *, lease_until: float, partition: int | None = None
    ) -> dict[str, Holder]:
        """Write one batch in one transaction, fenced by the run's lease epoch (as ``SqlStore``)."""
        if partition is not None:
            held: dict[str, Holder] = self.__getattr__("commit")(
                run_id, epoch, batch, lease_until=lease_until, partition=partition
            )
            return held
        if self._created:
            self._created.pop(run_id, None)
        run_cols = tuple(batch.run)
        fence = self._update(("fence", *run_cols), "runs", (*run_cols, "lease_expires"), ("id", "epoch"))
        with self._cursor() as cur:
            cur.execute(fence, (*batch.run.values(), lease_until, run_id, epoch))
            if cur.rowcount != 1:
                raise StaleEpochError(
                    f"run {run_id}: the lease (epoch {epoch}) was taken over by another process; "
                    "this one stops acting for it"
                )
            if batch.instances:
                for shape, rows in shapes(batch.instances, ("id",), run_id).items():
                    upd = self._update(shape, "task_instances", shape[1:], ("run_id", "id"))
                    cur.executemany(upd, rows)
            if batch.attempts_started:
                cur.executemany(SQL["insert_attempt"], [attempt_row(a) for a in batch.attempts_started])
            if batch.attempts_ended:
                for shape, rows in shapes(batch.attempts_ended, ("instance_id", "number"), run_id).items():
                    end = self._update(shape, "attempts", shape[2:], ("run_id", "instance_id", "number"))
                    cur.executemany(end, rows)
            if batch.transitions:
                rows = [
                    (run_id, x.instance_id, x.old, x.new, x.at, x.cause, x.attempt) for x in batch.transitions
                ]
                cur.executemany(SQL["insert_transition"], rows)
            held = (
                self._claims_in(
                    cur, run_id, batch.claim_owner, time.time(), batch.claim_start, batch.claim_end
                )
                if batch.claim_owner is not None
                else {}
            )
        if self._checkpointer is not None:
            self._checkpointer.committed()
        return held


_SUPERSEDE = (
    "UPDATE runs SET state = 'cancelled', error = ?, ended_at = ? "
    "WHERE runs.id = ? AND runs.state IN ('pending', 'running')"
)
