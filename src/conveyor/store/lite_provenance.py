"""The run record's writes, as SQL text both stores run: ``SqlStore`` through SQLAlchemy
(``store.provenance``), the embedded ``LiteStore`` on ``sqlite3`` (this mixin), so that
``conveyor run`` keeps a record without importing SQLAlchemy. Named parameters (``:name``) are
what both ``sqlite3`` and SQLAlchemy's ``text()`` take.

A run's row is written once, when the run is created, and never changed: it describes the code
and environment the run started from. An instance's inputs are replaced by a later drive of the
same run (``conveyor retry``): the inputs of the attempt that made its outputs are the ones that
count. Only the ``inputs`` column of ``instance_provenance`` is written here; its cache columns
belong to ``conveyor.cache``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from conveyor.store.records import Provenance

COLUMNS = (
    "run_id",
    "git_commit",
    "diff_hash",
    "diff",
    "python",
    "platform",
    "env_hash",
    "env_kind",
    "source_date_epoch",
    "created_at",
)
RECORD_RUN = (
    f"INSERT INTO run_provenance ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)
RECORD_INPUTS = (
    "INSERT INTO instance_provenance (run_id, instance_id, inputs) VALUES (:run_id, :instance_id, :inputs) "
    "ON CONFLICT (run_id, instance_id) DO UPDATE SET inputs = excluded.inputs"
)
SUCCEEDED_OUTPUTS = (
    "SELECT instance_id, outputs FROM attempts WHERE run_id = :run_id AND state = 'succeeded' "
    "ORDER BY instance_id, number"
)


def run_row(rec: Provenance) -> dict[str, Any]:
    return {c: getattr(rec, c) for c in COLUMNS}


def input_rows(run_id: str, inputs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "instance_id": iid, "inputs": json.dumps(list(fps), sort_keys=True)}
        for iid, fps in sorted(inputs.items())
    ]


def outputs_of(rows: Iterable[Sequence[Any]]) -> dict[str, list[dict[str, Any]]]:
    """Instance id -> its last successful attempt's outputs ([] when it recorded none)."""
    return {str(iid): json.loads(outputs) if outputs else [] for iid, outputs in rows}


class LiteProvenances:
    """Mixed into ``LiteStore``; the reads go to ``SqlStore`` (``LiteStore.__getattr__``)."""

    if TYPE_CHECKING:

        def _cursor(self) -> AbstractContextManager[Any]: ...

    def record_provenance(self, rec: Provenance) -> None:
        """Keep a run's record; a second record of the same run is ignored."""
        with self._cursor() as cur:
            cur.execute(RECORD_RUN, run_row(rec))

    def record_inputs(self, run_id: str, inputs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Keep each instance's inputs' fingerprints (instance id -> fingerprints)."""
        rows = input_rows(run_id, inputs)
        if rows:
            with self._cursor() as cur:
                cur.executemany(RECORD_INPUTS, rows)

    def succeeded_outputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Per instance that succeeded in the run: what its last successful attempt's targets held."""
        with self._cursor() as cur:
            cur.execute(SUCCEEDED_OUTPUTS, {"run_id": run_id})
            return outputs_of(cur.fetchall())
