"""Records to rows and back, for the statements of ``statements``: tuples in column order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from conveyor.store.records import AttemptRecord, InstanceRecord, RunRecord


def shapes(
    rows: list[dict[str, Any]], keys: tuple[str, ...], run_id: str
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows (dicts: ``keys``, then the columns they change) grouped by their columns, one
    statement per group, each as the tuple (columns..., run_id, keys...). The driver builds
    every row of one kind alike, so there are few groups."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    n = len(keys)
    for row in rows:
        shape = tuple(row)
        if shape[:n] != keys:
            row = {**{k: row[k] for k in keys}, **{k: v for k, v in row.items() if k not in keys}}
            shape = tuple(row)
        values = tuple(row.values())
        group = groups.get(shape)
        if group is None:
            group = groups[shape] = []
        group.append((*values[n:], run_id, *values[:n]))
    return groups


def run_row(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.pipeline,
        r.target,
        json.dumps(r.params),
        r.key,
        r.state,
        r.workdir,
        r.created_at,
        r.started_at,
        r.ended_at,
        r.error,
        r.owner,
        r.epoch,
        r.lease_expires,
        r.total,
        r.partitions,
        r.cancel_requested,
        r.executor,
        r.team,
        r.created_by,
        r.image,
    )


def run_record(row: Any, counts: dict[str, int]) -> RunRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    return RunRecord(**d, counts=counts)


def instance_row(r: InstanceRecord, seq: int) -> tuple[Any, ...]:
    return (
        r.run_id,
        r.id,
        seq,
        r.task,
        r.label,
        dumps(r.params),
        dumps(r.upstream),
        r.state,
        r.attempts,
        r.failures,
        r.lost,
        r.not_before,
        r.priority,
        dumps(r.targets),
        r.result,
        r.error,
        r.started_at,
        r.ended_at,
        r.partition,
    )


_ENCODE = json.JSONEncoder().encode  # json.dumps makes a new encoder per call


def dumps(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "[]"  # most instances: no upstream, no targets
    return _ENCODE(value)


def loads(text: str) -> Any:
    return [] if text == "[]" else {} if text == "{}" else json.loads(text)


def instance_record(row: Sequence[Any]) -> InstanceRecord:
    """An instance from a row of every column but ``seq``, in the table's order."""
    (run_id, iid, task, label, params, upstream, state, attempts, failures, lost, not_before, priority,
     targets, result, error, started_at, ended_at, partition) = row  # fmt: skip
    return InstanceRecord(
        run_id,
        iid,
        task,
        label,
        loads(params),
        loads(upstream),
        state,
        attempts,
        failures,
        lost,
        not_before,
        priority,
        loads(targets),
        result,
        error,
        started_at,
        ended_at,
        partition,
    )


def attempt_row(a: AttemptRecord) -> tuple[Any, ...]:
    return (
        a.run_id,
        a.instance_id,
        a.number,
        a.state,
        a.started_at,
        a.ended_at,
        a.error,
        a.log_path,
        a.worker,
        a.heartbeat,
        a.waited_for,
        a.outputs,
        a.placement,
    )
