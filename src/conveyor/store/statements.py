"""Statements compiled once per dialect and run straight on a DBAPI cursor.

The driver's group commit runs a handful of statements hundreds of times a second; building
and compiling them through SQLAlchemy Core each time cost more than the database work. Here
each is compiled once per process and dialect (``statement``), and takes its parameters as
plain tuples. Only the store package uses this module.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from conveyor.store import schema as t

#: Alembic's own bookkeeping table, as ``alembic upgrade`` creates it.
alembic_version = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

RUN_COLUMNS = tuple(c.key for c in t.runs.columns)
INSTANCE_COLUMNS = tuple(c.key for c in t.task_instances.columns)
ATTEMPT_COLUMNS = tuple(c.key for c in t.attempts.columns)
TRANSITION_COLUMNS = ("run_id", "instance_id", "old", "new", "at", "cause", "attempt")


class Statement:
    """A statement compiled once for a dialect, run on a DBAPI cursor.

    Callers give each row's values as a tuple in ``order`` (column names); a bind named ``v_col``
    or ``k_col`` (prefixed so it never clashes with a column's own bind) takes ``col``. Where the
    dialect is positional and its order is ``order`` (SQLite, always, for these statements), the
    tuples go to the driver as they are.
    """

    __slots__ = ("_direct", "_names", "_pick", "_positional", "_procs", "text")

    def __init__(
        self, stmt: Any, dialect: Dialect, order: Sequence[str], column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
        self.text: str = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self._positional else list(compiled.binds)
        self._names = names
        keys = [n[2:] if n[:2] in ("v_", "k_") else n for n in names]
        self._pick: Callable[[tuple[Any, ...]], tuple[Any, ...]]
        if all(k in order for k in keys):
            index = [list(order).index(k) for k in keys]
            self._pick = operator.itemgetter(*index) if len(index) > 1 else lambda row: (row[index[0]],)
        else:  # binds with values of their own (a LIMIT, say)
            fixed = {k: compiled.binds[n].value for n, k in zip(names, keys, strict=True) if k not in order}
            spots = [(list(order).index(k) if k in order else -1, fixed.get(k)) for k in keys]
            self._pick = lambda row: tuple(row[i] if i >= 0 else value for i, value in spots)
        self._procs: list[tuple[int, str, Callable[[Any], Any]]] = []
        for i, name in enumerate(names):
            typ = compiled.binds[name].type
            if dialect.name == "sqlite" and isinstance(typ, sa.Float):
                continue  # float(): what the column's REAL affinity does anyway
            proc = typ.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self._procs.append((i, name, proc))
        self._direct = self._positional and keys == list(order) and not self._procs

    def rows(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        """DBAPI parameters for ``rows`` (tuples in ``order``)."""
        if self._direct:
            return rows
        return [self.one(row) for row in rows]

    def one(self, row: tuple[Any, ...]) -> Any:
        if self._direct:
            return row
        got = self._pick(row)
        if self._positional:
            out = list(got)
            for i, _, proc in self._procs:
                out[i] = proc(out[i])
            return out
        named = dict(zip(self._names, got, strict=True))
        for _, name, proc in self._procs:
            named[name] = proc(named[name])
        return named


_COMPILED: dict[Hashable, Statement] = {}
_DDL: dict[Hashable, list[str]] = {}


def statement(
    dialect: Dialect,
    key: Hashable,
    build: Callable[[], Any],
    order: Sequence[str],
    column_keys: Sequence[str] | None = None,
) -> Statement:
    """The statement ``build()`` makes, compiled for ``dialect`` once per process."""
    shared = (dialect.name, dialect.driver, dialect.paramstyle, key)
    found = _COMPILED.get(shared)
    if found is None:
        found = _COMPILED[shared] = Statement(build(), dialect, order, column_keys)
    return found


def schema_ddl(dialect: Dialect) -> list[str]:
    """``CREATE`` statements for every table and index, as ``metadata.create_all`` emits them."""
    key = ("ddl", dialect.name, dialect.driver)
    cached = _DDL.get(key)
    if cached is not None:
        return cached
    ddl = _DDL[key] = []
    for table in [*t.metadata.sorted_tables, alembic_version]:
        ddl.append(str(CreateTable(table).compile(dialect=dialect)))
        ddl += [str(CreateIndex(ix).compile(dialect=dialect)) for ix in sorted(table.indexes, key=str)]
    return ddl


def stamp() -> Any:
    return alembic_version.insert().values(version_num=sa.bindparam("v_version_num"))


def fence(run_cols: tuple[str, ...]) -> Any:
    r = t.runs
    return (
        r.update()
        .where(r.c.id == sa.bindparam("k_id"), r.c.epoch == sa.bindparam("k_epoch"))
        .values({c: sa.bindparam(f"v_{c}") for c in ("lease_expires", *run_cols)})
    )


def fence_partition() -> Any:
    p = t.partitions
    return (
        p.update()
        .where(
            p.c.run_id == sa.bindparam("k_run_id"),
            p.c.number == sa.bindparam("k_number"),
            p.c.epoch == sa.bindparam("k_epoch"),
        )
        .values(lease_expires=sa.bindparam("v_lease_expires"))
    )


def instance_update(cols: tuple[str, ...]) -> Any:
    ti = t.task_instances
    return (
        ti.update()
        .where(ti.c.run_id == sa.bindparam("k_run_id"), ti.c.id == sa.bindparam("k_id"))
        .values({c: sa.bindparam(f"v_{c}") for c in cols})
    )


def attempt_update(cols: tuple[str, ...]) -> Any:
    a = t.attempts
    return (
        a.update()
        .where(
            a.c.run_id == sa.bindparam("k_run_id"),
            a.c.instance_id == sa.bindparam("k_instance_id"),
            a.c.number == sa.bindparam("k_number"),
        )
        .values({c: sa.bindparam(f"v_{c}") for c in cols})
    )


def current_attempt_update(cols: tuple[str, ...]) -> Any:
    """``attempt_update`` only while the attempt is still running: the runner's writes and a
    new owner's declaring it lost race, and the first one wins."""
    return attempt_update(cols).where(t.attempts.c.state == "running")


# -- SQLite's schema as text, for the embedded run (``lite``) -----------------------------------
SQLITE_MODULE = Path(__file__).with_name("sqlite_ddl.py")


def sqlite_ddl_module() -> str:
    """The source of ``sqlite_ddl``: the schema's revision, its ``CREATE`` statements for SQLite
    and the hot path's column orders, so that ``conveyor run`` needs no SQLAlchemy.
    Regenerate it after changing the schema: ``python -m conveyor.store.statements`` (then
    ``ruff format`` it)."""
    from sqlalchemy.dialects import sqlite

    ddl = "".join(f"    {s!r},\n" for s in schema_ddl(sqlite.dialect()))
    return (
        "# ruff: noqa: E501\n"
        '"""Generated by ``python -m conveyor.store.statements`` from ``schema``: do not edit.\n\n'
        "SQLite's schema as text, for the embedded run's store (``lite``), which imports no SQLAlchemy;\n"
        'tests/store/test_lite.py checks it is current."""\n\n'
        f"REVISION = {t.SCHEMA_REVISION!r}\n"
        f"RUN_COLUMNS = {RUN_COLUMNS!r}\n"
        f"INSTANCE_COLUMNS = {INSTANCE_COLUMNS!r}\n"
        f"ATTEMPT_COLUMNS = {ATTEMPT_COLUMNS!r}\n"
        f"TRANSITION_COLUMNS = {TRANSITION_COLUMNS!r}\n"
        f"DDL = (\n{ddl})\n"
    )


if __name__ == "__main__":
    SQLITE_MODULE.write_text(sqlite_ddl_module())
    print(f"wrote {SQLITE_MODULE}")
