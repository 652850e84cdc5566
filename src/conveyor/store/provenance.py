"""The run record in the store (``conveyor.provenance``): what each run ran with (its code's
commit and uncommitted diff, Python, platform, environment, the commit's time) and what each of
its task instances read (its inputs' fingerprints).

A run's row is written once, when the run is created, and never changed: it describes the code
and the environment the run was started from. An instance's inputs are written when its run (or
partition) ends, replacing what an earlier drive of the same run wrote (``conveyor retry``): the
inputs of the attempt that made its outputs are the ones that count. Only the ``inputs`` column
of ``instance_provenance`` is written here; its cache columns belong to ``conveyor.cache``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store.part import Part


@dataclass(frozen=True, slots=True)
class Provenance:
    """One run's record: the columns of ``run_provenance``."""

    run_id: str
    python: str
    platform: str
    env_hash: str
    env_kind: str  # "lock:<file>" or "distributions"
    created_at: float
    git_commit: str | None = None  # None: not run from a git working copy
    diff_hash: str | None = None  # None: the working copy was clean
    diff: str | None = None
    source_date_epoch: float | None = None  # the commit's time


_INPUTS = sa.text(
    "INSERT INTO instance_provenance (run_id, instance_id, inputs) VALUES (:run_id, :instance_id, :inputs) "
    "ON CONFLICT (run_id, instance_id) DO UPDATE SET inputs = excluded.inputs"
)


class Provenances(Part):
    """Mixed into ``SqlStore``."""

    def record_provenance(self, rec: Provenance) -> None:
        """Keep a run's record; a second record of the same run is ignored (the first says how
        it was started)."""
        p = t.run_provenance
        row = {name: getattr(rec, name) for name in rec.__slots__}
        with self._tx() as conn:
            if conn.execute(sa.select(p.c.run_id).where(p.c.run_id == rec.run_id)).first() is None:
                conn.execute(p.insert().values(**row))

    def provenance(self, run_id: str) -> Provenance | None:
        """The run's record; None for a run created before records were kept."""
        p = t.run_provenance
        with self._tx() as conn:
            row = conn.execute(sa.select(p).where(p.c.run_id == run_id)).mappings().first()
        return None if row is None else Provenance(**dict(row))

    def record_inputs(self, run_id: str, inputs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Keep each instance's inputs' fingerprints (instance id -> fingerprints)."""
        if not inputs:
            return
        rows = [
            {"run_id": run_id, "instance_id": iid, "inputs": json.dumps(list(fps), sort_keys=True)}
            for iid, fps in sorted(inputs.items())
        ]
        with self._tx() as conn:
            conn.execute(_INPUTS, rows)

    def instance_inputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Each instance's inputs' fingerprints, as recorded (instances with no row are absent)."""
        ip = t.instance_provenance
        with self._tx() as conn:
            rows = conn.execute(sa.select(ip.c.instance_id, ip.c.inputs).where(ip.c.run_id == run_id)).all()
        return {str(r[0]): json.loads(r[1] or "[]") for r in rows}
