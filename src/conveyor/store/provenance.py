"""The run record in ``SqlStore`` (``conveyor.provenance``): what each run ran with (its code's
commit and uncommitted diff, Python, platform, environment, the commit's time) and what each of
its task instances read (its inputs' fingerprints). The writes are the SQL text of
``lite_provenance``, shared with the embedded store; see there for the rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from conveyor.store import lite_provenance as lp
from conveyor.store import schema as t
from conveyor.store.part import Part
from conveyor.store.records import Provenance

_RECORD_RUN = sa.text(lp.RECORD_RUN)
_RECORD_INPUTS = sa.text(lp.RECORD_INPUTS)
_SUCCEEDED_OUTPUTS = sa.text(lp.SUCCEEDED_OUTPUTS)


class Provenances(Part):
    """Mixed into ``SqlStore``."""

    def record_provenance(self, rec: Provenance) -> None:
        """Keep a run's record; a second record of the same run is ignored (the first says how
        it was started)."""
        with self._tx() as conn:
            conn.execute(_RECORD_RUN, lp.run_row(rec))

    def provenance(self, run_id: str) -> Provenance | None:
        """The run's record; None for a run created before records were kept."""
        p = t.run_provenance
        with self._tx() as conn:
            row = conn.execute(sa.select(p).where(p.c.run_id == run_id)).mappings().first()
        return None if row is None else Provenance(**dict(row))

    def record_inputs(self, run_id: str, inputs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Keep each instance's inputs' fingerprints (instance id -> fingerprints)."""
        rows = lp.input_rows(run_id, inputs)
        if rows:
            with self._tx() as conn:
                conn.execute(_RECORD_INPUTS, rows)

    def instance_inputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Each instance's inputs' fingerprints, as recorded (instances with no row are absent)."""
        ip = t.instance_provenance
        with self._tx() as conn:
            rows = conn.execute(sa.select(ip.c.instance_id, ip.c.inputs).where(ip.c.run_id == run_id)).all()
        return {str(r[0]): json.loads(r[1] or "[]") for r in rows}

    def succeeded_outputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Per instance that succeeded in the run: what its last successful attempt's targets held."""
        with self._tx() as conn:
            return lp.outputs_of(conn.execute(_SUCCEEDED_OUTPUTS, {"run_id": run_id}).all())
