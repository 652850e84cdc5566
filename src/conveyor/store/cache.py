"""The result cache's rows (``conveyor.cache``): ``cache_entries`` (a task instance's key -> the
run, result and outputs of the attempt that made them) and the cache's two columns of
``instance_provenance`` (each instance's key, and the run it reused instead of executing).

Plain SQL on a DBAPI cursor, so that ``conveyor run``'s embedded store (``lite``) does this
without importing SQLAlchemy: one read per run, one write per commit that ended attempts.
Rows are upserted on both sides: the run record (``store.provenance``) writes its own columns of
the same ``instance_provenance`` rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

#: Instance ids per query: far below SQLite's and PostgreSQL's limits on bound parameters.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What one key made: the run whose attempt made it, its result artifact's reference (None:
    it returned None) and its targets' fingerprints (``targets.files.fingerprint``)."""

    key: str
    run_id: str
    instance_id: str
    result: str | None
    outputs: list[dict[str, Any]]
    created_at: float


_SELECT = (
    "SELECT key, run_id, instance_id, result, outputs, created_at FROM cache_entries WHERE instance_id IN "
)
_PUT = (
    "INSERT INTO cache_entries (key, run_id, instance_id, result, outputs, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, "
    "instance_id = excluded.instance_id, result = excluded.result, outputs = excluded.outputs, "
    "created_at = excluded.created_at"
)
_MARK = (
    "INSERT INTO instance_provenance (run_id, instance_id, cache_key, reused_from) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id, instance_id) DO UPDATE SET cache_key = excluded.cache_key, "
    "reused_from = excluded.reused_from"
)
_MARKED = "SELECT instance_id, cache_key, reused_from FROM instance_provenance WHERE run_id = ?"


class CacheEntries:
    """The store's part for the result cache. Not a ``Part``: that would import SQLAlchemy into
    ``conveyor run``, which this part serves without it (``lite``)."""

    dialect: str

    if TYPE_CHECKING:

        def _cursor(self) -> AbstractContextManager[Any]: ...

    @property
    def _positional(self) -> str:
        """The DBAPI's placeholder: sqlite3's ``?``, psycopg's ``%s``."""
        return "?" if self.dialect == "sqlite" else "%s"

    def _cache_sql(self, text: str) -> str:
        mark = self._positional
        return text if mark == "?" else text.replace("?", mark)

    def cache_entries(self, instance_ids: Sequence[str]) -> list[CacheEntry]:
        """Every entry made by these task instances (any run, any key)."""
        found: list[CacheEntry] = []
        ids = list(dict.fromkeys(instance_ids))
        with self._cursor() as cur:
            for i in range(0, len(ids), CHUNK):
                part = ids[i : i + CHUNK]
                cur.execute(self._cache_sql(_SELECT + "(" + ", ".join("?" * len(part)) + ")"), tuple(part))
                found += [
                    CacheEntry(str(k), str(r), str(iid), res, json.loads(out or "[]"), float(at))
                    for k, r, iid, res, out, at in cur.fetchall()
                ]
        return found

    def put_cache_entries(self, entries: Sequence[CacheEntry]) -> None:
        """Record what these keys made (a key made again replaces its entry: the newest wins)."""
        if not entries:
            return
        rows = [
            (e.key, e.run_id, e.instance_id, e.result, json.dumps(e.outputs), e.created_at) for e in entries
        ]
        with self._cursor() as cur:
            cur.executemany(self._cache_sql(_PUT), rows)

    def mark_cached(self, run_id: str, rows: Sequence[tuple[str, str, str | None]]) -> None:
        """Each instance's cache key, and the run whose outputs it reused (None: it executes):
        ``(instance_id, key, reused_from)``."""
        if not rows:
            return
        with self._cursor() as cur:
            cur.executemany(self._cache_sql(_MARK), [(run_id, iid, key, src) for iid, key, src in rows])

    def cached_marks(self, run_id: str) -> dict[str, tuple[str | None, str | None]]:
        """The run's instances' ``(cache_key, reused_from)``, for those that have them."""
        with self._cursor() as cur:
            cur.execute(self._cache_sql(_MARKED), (run_id,))
            return {str(iid): (key, src) for iid, key, src in cur.fetchall()}


class LiteCacheEntries(CacheEntries):
    """The same on the embedded store (always SQLite; it has no ``dialect`` of its own)."""

    @property
    def _positional(self) -> str:
        return "?"
