"""What backfills keep in the store: their dates, each date's run, and a version that makes every
step of a backfill happen once, however many processes step it at the same moment."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from conveyor import ids
from conveyor.errors import BackfillNotFound
from conveyor.store import schema as t
from conveyor.store.leases import reopen_partitions
from conveyor.store.part import Part
from conveyor.store.records import BackfillRecord, InstanceRecord, PartitionRecord, RunRecord


class Backfills(Part):
    """Mixed into ``SqlStore``."""

    def create_backfill(self, rec: BackfillRecord) -> None:
        with self._tx() as conn:
            conn.execute(t.backfills.insert().values(**_row(rec)))

    def get_backfill(self, backfill_id: str) -> BackfillRecord:
        b = t.backfills
        if not ids.plausible(backfill_id):  # never asked of the store
            raise BackfillNotFound(f"no backfill {ids.shown(backfill_id)!r}: {ids.RULE}")
        with self._tx() as conn:
            row = conn.execute(sa.select(b).where(b.c.id == backfill_id)).mappings().first()
            if row is None:
                rows = (
                    conn.execute(sa.select(b).where(b.c.id.startswith(backfill_id, autoescape=True)).limit(2))
                    .mappings()
                    .all()
                )
                if len(rows) != 1:
                    raise BackfillNotFound(
                        f"no backfill {backfill_id!r}"
                        + ("; the prefix is not unique" if rows else "; list them with conveyor backfills")
                    )
                row = rows[0]
        return backfill_record(row)

    def list_backfills(self, *, limit: int | None = 50, state: str | None = None) -> list[BackfillRecord]:
        """Backfills newest first; ``limit=None``: all of them."""
        b = t.backfills
        q = sa.select(b).order_by(b.c.created_at.desc()).limit(limit)
        if state:
            q = q.where(b.c.state == state)
        with self._tx() as conn:
            return [backfill_record(r) for r in conn.execute(q).mappings()]

    def advance_backfill(
        self,
        rec: BackfillRecord,
        *,
        slots: list[dict[str, Any]],
        state: str,
        runs: Sequence[tuple[RunRecord, Sequence[InstanceRecord], Sequence[PartitionRecord]]] = (),
        reopen: Sequence[str] = (),
        now: float | None = None,
    ) -> bool:
        """One step of a backfill, in one transaction: its new slots and state, the runs it
        submits and the failed runs it reopens. False (nothing written) if another process
        stepped it since ``rec`` was read."""
        b = t.backfills
        ended = (time.time() if now is None else now) if state != "running" else None
        try:
            with self._tx() as conn:
                moved = conn.execute(
                    b.update()
                    .where(b.c.id == rec.id, b.c.version == rec.version)
                    .values(version=rec.version + 1, slots=json.dumps(slots), state=state, ended_at=ended)
                ).rowcount
                if moved != 1:
                    raise _Stepped()
                for run_id in reopen:
                    reopen_partitions(conn, run_id)
                if runs:
                    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    try:
                        for run, instances, partitions in runs:
                            self._insert_run(cur, run, instances, partitions)
                    finally:
                        cur.close()
        except _Stepped:
            return False
        return True

    def run_states(self, run_ids: Sequence[str]) -> dict[str, str]:
        r = t.runs
        if not run_ids:
            return {}
        with self._tx() as conn:
            rows = conn.execute(sa.select(r.c.id, r.c.state).where(r.c.id.in_(list(run_ids)))).all()
        return {str(i): str(s) for i, s in rows}


class _Stepped(Exception):
    """Another process stepped the backfill first: roll this transaction back."""


def _row(rec: BackfillRecord) -> dict[str, Any]:
    d = {f: getattr(rec, f) for f in BackfillRecord.__slots__}
    d["params"] = json.dumps(d["params"])
    d["slots"] = json.dumps(d["slots"])
    return d


def backfill_record(row: Any) -> BackfillRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["slots"] = json.loads(d["slots"])
    return BackfillRecord(**d)
