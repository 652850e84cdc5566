"""What the web UI polls: a run's instances that changed after a cursor.

The cursor is an id of the transitions table: every change of an instance's state is a row there,
with an id that grows. A reader asks for the instances with a transition after its cursor and
gets the new cursor, the run's highest transition id, so that the next answer starts where this
one ended.

That holds only if no transition with an id under the cursor can still appear. On SQLite one
writer commits at a time, in the order it takes ids. On PostgreSQL an id is taken at the insert and
seen at the commit, and two schedulers driving two partitions of one run commit side by side: a
reader could see id 11 before id 10 commits, hand out 11 as the cursor, and miss 10 for good. So
there, before its cursor counts, the reader waits for the group commits in flight on the run:
each holds its partition's row lock (its fence, the first statement) until it commits. The wait
holds no lock while it waits (no deadlock with a writer), and is bounded: past ``SETTLE`` seconds
the cursor does not move, and the next read sends the same changes again.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from conveyor.errors import StoreError
from conveyor.store import schema as t
from conveyor.store import statements
from conveyor.store.part import Part
from conveyor.store.records import InstanceRecord
from conveyor.store.rows import instance_record

#: How long a reader on PostgreSQL waits, at most, for the commits in flight on a run (seconds).
SETTLE = 2.0


class Changes(Part):
    """Mixed into ``SqlStore``."""

    def changes(self, run_id: str, since: int) -> tuple[int, list[InstanceRecord]]:
        """The run's cursor (its highest transition id, 0 if it has none) and its instances with a
        transition after ``since`` (every instance for 0), in graph order. Every transition up
        to the cursor is reflected in the instances read: pass it as the next ``since``."""
        ti, tr = t.task_instances, t.transitions
        last = self._stmt(
            "last_transition",
            lambda: sa.select(sa.func.coalesce(sa.func.max(tr.c.id), 0)).where(
                tr.c.run_id == sa.bindparam("k_run_id")
            ),
            ("run_id",),
        )
        with self._cursor() as cur:
            cur.execute(last.text, last.one((run_id,)))
            cursor = int(cur.fetchone()[0])
        if self.dialect == "postgresql" and not self._settle(run_id):
            cursor = min(cursor, since)  # a commit is still going: send these changes again next time
        cols = [c for c in statements.INSTANCE_COLUMNS if c != "seq"]
        if since <= 0:
            read = self._stmt(
                "changed_instances_all",
                lambda: (
                    sa.select(*(ti.c[c] for c in cols))
                    .where(ti.c.run_id == sa.bindparam("k_run_id"))
                    .order_by(ti.c.seq)
                ),
                ("run_id",),
            )
            values: tuple[object, ...] = (run_id,)
        else:
            changed = sa.select(tr.c.instance_id).where(
                tr.c.run_id == sa.bindparam("k_run_id"), tr.c.id > sa.bindparam("k_since")
            )
            read = self._stmt(
                "changed_instances",
                lambda: (
                    sa.select(*(ti.c[c] for c in cols))
                    .where(ti.c.run_id == sa.bindparam("k_run_id"), ti.c.id.in_(changed))
                    .order_by(ti.c.seq)
                ),
                ("run_id", "since"),
            )
            values = (run_id, since)
        with self._cursor() as cur:
            cur.execute(read.text, read.one(values))
            rows = cur.fetchall()
        return cursor, [instance_record(r) for r in rows]

    def _settle(self, run_id: str) -> bool:
        """Wait for the group commits in flight on the run's partitions (PostgreSQL); False if
        one is still going after ``SETTLE`` seconds."""
        p = t.partitions
        mine = sa.select(p.c.number).where(p.c.run_id == run_id)
        with self._tx() as conn:
            every = set(conn.execute(mine).scalars())
            if not every:
                return True  # driven by one conveyor run: one writer, committing in order
            # the rows no writer holds, share-locked for an instant; the others are committing
            free = set(conn.execute(mine.with_for_update(read=True, skip_locked=True)).scalars())
        deadline = time.monotonic() + SETTLE
        for number in sorted(every - free):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                with self._tx() as conn:  # holds nothing else while it waits
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(left * 1000))}")
                    conn.execute(mine.where(p.c.number == number).with_for_update(read=True))
            except StoreError:
                return False  # the lock timed out (or the store went away: the next read says so)
        return True
