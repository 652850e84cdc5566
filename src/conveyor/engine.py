"""Running pipelines on this machine: the library API behind ``conveyor run`` and ``retry``.

    result = conveyor.run("pipelines/sales.py:daily_sales", {"days": 3})

loads the pipeline, records its graph, creates the run in the store (or resumes the unfinished
run of the same pipeline and parameters), and drives it with a pool of local worker processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import params as P
from conveyor.core import Change
from conveyor.driver import RunDriver, RunResult
from conveyor.errors import ConveyorError, GraphError, RunBusy
from conveyor.graph import Graph
from conveyor.interrupts import interrupts
from conveyor.loader import load_pipeline, split_target
from conveyor.owners import owner_is_dead
from conveyor.partitions import BOUND, partition
from conveyor.pipelines import PipelineDef
from conveyor.resources import Capacity
from conveyor.store import Store, default_url, home, open_store
from conveyor.store.records import InstanceRecord, PartitionRecord, RunRecord
from conveyor.targets import FileTarget, flatten


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run ready to drive: where it lives, its graph, and whether it resumes an older one."""

    store: Store
    run: RunRecord
    graph: Graph
    resumed: bool
    capacity: Capacity


def canonical_target(target: str, pipeline: str) -> str:
    """``file.py:name`` with the file made absolute and the pipeline named, so that the run can
    be found and reloaded even if the file gains more pipelines."""
    where, _ = split_target(target)
    if where.endswith(".py") or "/" in where:
        where = str(Path(where).resolve())
    return f"{where}:{pipeline}"


def run_key(target: str, params: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{target}\0{P.canonical_json(params)}".encode()).hexdigest()[:16]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def new_run(
    pipe: PipelineDef,
    ref: str,
    pjson: dict[str, Any],
    key: str,
    graph: Graph,
    workdir: str | None = None,
    *,
    partitions: int = 0,
) -> RunRecord:
    """A new pending run of ``pipe``: driven here (``partitions=0``) or by the schedulers."""
    return RunRecord(
        id=new_run_id(),
        pipeline=pipe.name,
        target=ref,
        params=pjson,
        key=key,
        state="pending",
        created_at=time.time(),
        workdir=workdir or os.getcwd(),
        total=len(graph),
        partitions=partitions,
    )


def instance_records(
    run_id: str, graph: Graph, only: set[str] | None = None, partition_of: Mapping[str, int] | None = None
) -> list[InstanceRecord]:
    part = partition_of or {}
    return [
        InstanceRecord(
            run_id,
            n.id,
            n.task.name,
            n.label,
            n.params_json,
            list(n.upstream),
            priority=n.task.priority,
            targets=[n.output.url]
            if n.output.__class__ is FileTarget
            else [t.url for t in flatten(n.output)],
            partition=part.get(n.id, 0),
        )
        for n in graph
        if only is None or n.id in only
    ]


def prepare(
    target: str | PipelineDef,
    params: Mapping[str, Any] | None = None,
    *,
    store: Store | None = None,
    db: str | None = None,
    from_text: bool = False,
    new: bool = False,
    force: bool = False,
    workers: int | None = None,
    resources: Mapping[str, int] | None = None,
) -> Prepared:
    """Load and build the pipeline, check it fits the machine, and find or create its run."""
    if isinstance(target, PipelineDef):
        pipe = target
        ref = f"{pipe.fn.__module__}:{pipe.fn.__name__}"
    else:
        pipe = load_pipeline(target)
        ref = canonical_target(target, pipe.name)
    bound = pipe.bind(params or {}, from_text=from_text)
    graph = pipe.build(bound)
    capacity = fit_capacity(graph, workers, resources)
    pjson = P.to_json(pipe.params, bound)
    # The graph's instances are part of "the same command": a default like end=None that means
    # today builds another graph tomorrow, which is another run.
    key = run_key(ref, {"params": pjson, "instances": sorted(graph.nodes)})
    store = store or open_store(db)
    if not (new or force):
        last = store.latest_run(key)
        if last is not None and last.state != "succeeded":
            _refuse_if_busy(last)
            missing = set(graph.nodes) - {r.id for r in store.instances(last.id)}
            if missing:
                store.add_instances(last.id, instance_records(last.id, graph, missing))
            return Prepared(store, last, graph, True, capacity)
    run = new_run(pipe, ref, pjson, key, graph)
    store.create_run(run, instance_records(run.id, graph))
    return Prepared(store, run, graph, False, capacity)


def submit(
    target: str,
    params: Mapping[str, Any] | None = None,
    *,
    store: Store | None = None,
    db: str | None = None,
    from_text: bool = False,
    partition_size: int = BOUND,
) -> RunRecord:
    """Record a new run for the schedulers (``conveyor scheduler``) to drive, its graph split
    into partitions that several schedulers can lease at once. Nothing runs here."""
    pipe = load_pipeline(target)
    run, instances, partitions = submission(
        pipe, canonical_target(target, pipe.name), params, from_text=from_text, partition_size=partition_size
    )
    (store or open_store(db)).create_run(run, instances, partitions)
    return run


Submission = tuple[RunRecord, list[InstanceRecord], list[PartitionRecord]]


def submission(
    pipe: PipelineDef,
    ref: str,
    params: Mapping[str, Any] | None = None,
    *,
    from_text: bool = False,
    partition_size: int = BOUND,
    workdir: str | None = None,
) -> Submission:
    """A new submitted run of ``pipe`` (loadable as ``ref``) as records: the run, its instances
    and its partitions, ready for the store."""
    bound = pipe.bind(params or {}, from_text=from_text)
    graph = pipe.build(bound)
    pjson = P.to_json(pipe.params, bound)
    parts = partition([n.id for n in graph], {n.id: n.upstream for n in graph}, partition_size)
    number = {iid: k for k, ids in enumerate(parts) for iid in ids}
    key = run_key(ref, {"params": pjson, "instances": sorted(graph.nodes), "submitted": True})
    run = new_run(pipe, ref, pjson, key, graph, workdir, partitions=len(parts))
    records = [
        PartitionRecord(
            run.id,
            k,
            len(ids),
            sorted({number[u] for i in ids for u in graph[i].upstream if number[u] != k}),
        )
        for k, ids in enumerate(parts)
    ]
    return run, instance_records(run.id, graph, partition_of=number), records


def fit_capacity(graph: Graph, workers: int | None, resources: Mapping[str, int] | None) -> Capacity:
    """The local executor's capacity; refuse a task that could never fit (before any run exists)."""
    capacity = Capacity.local(workers or default_workers(), resources)
    first_of_each_task = {node.task.name: node for node in reversed(list(graph))}
    for node in first_of_each_task.values():
        capacity.check(node.label, node.task.resources)
    return capacity


def _refuse_if_busy(run: RunRecord) -> None:
    if run.owner and run.lease_expires and run.lease_expires > time.time() and not owner_is_dead(run.owner):
        until = time.strftime("%H:%M:%S", time.localtime(run.lease_expires))
        raise RunBusy(
            f"run {run.id} is being driven by {run.owner} (lease until {until}, renewed while it "
            "lives); wait for it to end or stop that process"
        )


def default_workers() -> int:
    return max(os.cpu_count() or 1, 1)


def drive(
    prepared: Prepared,
    *,
    force: bool = False,
    retry: bool = False,
    grace: float = 10.0,
    on_change: Callable[[Change, str], None] | None = None,
    on_start: Callable[[RunDriver], None] | None = None,
) -> RunResult:
    """Drive a prepared run to its end on local worker processes."""
    driver = RunDriver(
        prepared.store,
        prepared.run,
        prepared.graph,
        prepared.capacity,
        home=home(),
        force=force,
        retry=retry,
        grace=grace,
        on_change=on_change,
    )
    if on_start is not None:
        on_start(driver)
    with interrupts(driver):
        return driver.drive()


def run(
    target: str | PipelineDef,
    params: Mapping[str, Any] | None = None,
    *,
    db: str | None = None,
    workers: int | None = None,
    force: bool = False,
    new: bool = False,
    resources: Mapping[str, int] | None = None,
) -> RunResult:
    """Run a pipeline to its end on this machine and return how it ended.

    The store stays open for the next call in this process (a notebook, a script running many
    pipelines): one engine per database, as SQLAlchemy recommends.
    """
    prepared = prepare(
        target, params, store=_store(db), new=new, force=force, workers=workers, resources=resources
    )
    return drive(prepared, force=force)


_STORES: dict[tuple[int, str], Store] = {}


def _store(db: str | None) -> Store:
    url = db or default_url()
    key = (os.getpid(), url)  # a forked child opens its own
    store = _STORES.get(key)
    if store is not None and url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        store.close()  # the file was deleted (rm -rf .conveyor): start a fresh one
        store = None
    if store is None:
        store = _STORES[key] = open_store(url)
    return store


def reopen(
    run_id: str,
    *,
    store: Store | None = None,
    db: str | None = None,
    workers: int | None = None,
    resources: Mapping[str, int] | None = None,
) -> Prepared:
    """An existing run, with its pipeline loaded again from where it was defined."""
    store = store or open_store(db)
    record = store.get_run(run_id)
    _refuse_if_busy(record)
    with _workdir(record.workdir):
        pipe = load_pipeline(record.target)
        graph = pipe.build(P.from_json(pipe.params, record.params))
    stored = store.instances(record.id)
    gone = [i for i in stored if i.id not in graph.nodes and i.state not in ("succeeded", "skipped")]
    if gone:
        raise GraphError(
            f"run {record.id}: its pipeline no longer builds {gone[0].label} (and {len(gone) - 1} more "
            "unfinished tasks) for these parameters; start a new run with conveyor run"
        )
    missing = set(graph.nodes) - {i.id for i in stored}
    if missing:
        store.add_instances(record.id, instance_records(record.id, graph, missing))
    return Prepared(store, record, graph, True, fit_capacity(graph, workers, resources))


@contextlib.contextmanager
def _workdir(path: str) -> Iterator[None]:
    if not path or not os.path.isdir(path) or os.path.samefile(path, os.getcwd()):
        yield
        return
    os.chdir(path)  # the run's relative targets and imports resolve where it was started
    yield


__all__ = ["ConveyorError", "Prepared", "RunBusy", "RunResult", "drive", "prepare", "reopen", "run", "submit"]
