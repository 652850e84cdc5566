"""Running pipelines on this machine: the library API behind ``conveyor run`` and ``retry``.

    result = conveyor.run("pipelines/sales.py:daily_sales", {"days": 3})

loads the pipeline, records its graph, creates the run in the store (or resumes the unfinished
run of the same pipeline and parameters), and drives it with a pool of local worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import params as P
from conveyor.core import Change
from conveyor.driver import RunDriver, RunResult, tail
from conveyor.errors import ConveyorError, GraphError, RunBusy, RunExists
from conveyor.executors import load
from conveyor.executors.choice import Choice, choose
from conveyor.executors.placing import Placement, place
from conveyor.executors.tickets import Tickets
from conveyor.graph import Graph
from conveyor.interrupts import interrupts
from conveyor.loader import load_pipeline, split_target
from conveyor.owners import owner_is_dead, owner_name
from conveyor.partitions import BOUND, partition
from conveyor.pipelines import PipelineDef
from conveyor.provenance.record import record_run
from conveyor.resources import Capacity
from conveyor.store import Store, default_url, home, open_embedded, open_store
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
    epoch: int | None = None  # the run's lease, taken by this process
    unseen: bool = False  # it succeeded moments ago, unreported: show it, run nothing
    placement: Placement = field(default_factory=Placement)  # its engines, opened


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
    """A new pending run of ``pipe``: driven here (``partitions=0``) or by the schedulers; of the
    team of the project whose ``conveyor.toml`` is beside its code (``project.team_of``)."""
    from conveyor.project import team_of

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
        team=team_of(ref, workdir),
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
            targets=[n.output.describe()]
            if n.output.__class__ is FileTarget
            else [t.describe() for t in flatten(n.output)],
            partition=part.get(n.id, 0),
        )
        for n in graph
        if only is None or n.id in only
    ]


#: A run of the same command that succeeded this recently (seconds), whose driving process died
#: before it could say so, is shown instead of starting another (see ``prepare``).
UNSEEN = 300.0


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
    executor: Choice | None = None,
) -> Prepared:
    """Load and build the pipeline, check it fits the machine (or the engines ``executor``
    chooses: by default the project's), find or create its run, and take the run's lease.

    The same pipeline and parameters never get two unfinished runs: of two processes creating
    it at once, one wins and the other resumes it, or gets ``RunBusy`` (naming the run) while
    the winner drives it, to follow it. A run of the same command that succeeded moments ago
    but whose process died before it could report it comes back with ``unseen=True``.
    """
    if isinstance(target, PipelineDef):
        pipe = target
        ref = f"{pipe.fn.__module__}:{pipe.fn.__name__}"
    else:
        pipe = load_pipeline(target)
        ref = canonical_target(target, pipe.name)
    bound = pipe.bind(params or {}, from_text=from_text)
    graph = pipe.build(bound, workdir=os.getcwd())
    placement, capacity = fit(graph, pipe, executor, workers, resources)
    try:
        return _prepare(pipe, ref, bound, graph, capacity, placement, store, db, new, force)
    except BaseException:
        placement.close()
        raise


def _prepare(
    pipe: PipelineDef,
    ref: str,
    bound: Mapping[str, Any],
    graph: Graph,
    capacity: Capacity,
    placement: Placement,
    store: Store | None,
    db: str | None,
    new: bool,
    force: bool,
) -> Prepared:
    pjson = P.to_json(pipe.params, bound)
    # The graph's instances are part of "the same command": a default like end=None that means
    # today builds another graph tomorrow, which is another run.
    key = run_key(ref, {"params": pjson, "instances": sorted(graph.nodes)})
    store = store or open_embedded(db)
    for _ in range(5):  # a lost race to create the run is followed by a look at the winner's
        last = store.latest_run(key)
        if last is not None and last.state in OPEN and (new or force):
            last = _supersede(store, last)
        if last is not None and not (new or force):
            if last.state != "succeeded":
                missing = set(graph.nodes) - {r.id for r in store.instances(last.id)}
                epoch = _lease(store, last)
                if missing:
                    store.add_instances(last.id, instance_records(last.id, graph, missing))
                return Prepared(store, last, graph, True, capacity, epoch, placement=placement)
            if _unseen(last):
                epoch = _lease(store, last)
                placement.close()
                return Prepared(store, last, graph, True, capacity, epoch, unseen=True)
        run = new_run(pipe, ref, pjson, key, graph)
        try:
            store.create_run(run, instance_records(run.id, graph))
        except RunExists:
            continue  # another process created it just now: resume or follow it
        record_run(store, run)
        return Prepared(store, run, graph, False, capacity, _lease(store, run), placement=placement)
    raise RunBusy(f"another process keeps creating runs of {pipe.name} with these parameters; try again")


#: The states of a run that is not over: a key has at most one run in them.
OPEN = ("pending", "running")


def _lease(store: Store, run: RunRecord) -> int:
    """Take the run's lease for this process (``RunBusy`` if another live process holds it; one
    this process took and never drove, say a ``prepare`` in a notebook, is taken again)."""
    me = owner_name()
    return store.acquire(run.id, me, LEASE_TTL, is_dead=lambda owner: owner == me or owner_is_dead(owner))


def _unseen(run: RunRecord) -> bool:
    """Did ``run`` succeed just now, its process dying before it released the lease (and so
    before it told its user)?"""
    ended = run.ended_at or 0.0
    return bool(run.owner) and time.time() - ended < UNSEEN and not _held(run)


def _held(run: RunRecord) -> bool:
    return bool(
        run.owner and run.lease_expires and run.lease_expires > time.time() and not owner_is_dead(run.owner)
    )


def _supersede(store: Store, run: RunRecord) -> RunRecord | None:
    """``--new`` or ``--force`` with an unfinished run of the same command: refuse while a live
    process drives it; otherwise end it as superseded, so the new run can be created."""
    if _held(run):
        raise RunBusy(
            f"run {run.id} of the same pipeline and parameters is being driven by {run.owner}; "
            f"wait for it to end, or cancel it (conveyor cancel {run.id}), then start a new one"
        )
    store.supersede(run.id, "superseded by a new run of the same pipeline and parameters (--new or --force)")
    return None


def submit(
    target: str,
    params: Mapping[str, Any] | None = None,
    *,
    store: Store | None = None,
    db: str | None = None,
    from_text: bool = False,
    partition_size: int = BOUND,
    executor: str | None = None,
) -> RunRecord:
    """Record a new run for the schedulers (``conveyor scheduler``) to drive, its graph split
    into partitions that several schedulers can lease at once; its tasks run on ``executor``
    unless they (or their pipeline) name one (default: the schedulers'). Nothing runs here."""
    if executor is not None:
        load(executor)  # an unknown name, or one not installed: one line, before anything is stored
    pipe = load_pipeline(target)
    run, instances, partitions = submission(
        pipe,
        canonical_target(target, pipe.name),
        params,
        from_text=from_text,
        partition_size=partition_size,
        executor=executor,
    )
    return record(store or open_store(db), run, instances, partitions)


def record(
    store: Store, run: RunRecord, instances: list[InstanceRecord], partitions: list[PartitionRecord]
) -> RunRecord:
    """Store a submitted run, or, if an unfinished run of the same pipeline and parameters
    exists, return that one: the same command never gets two unfinished runs."""
    for _ in range(5):
        try:
            store.create_run(run, instances, partitions)
            record_run(store, run)
            return run
        except RunExists:
            existing = store.latest_run(run.key)
            if existing is not None and existing.state in OPEN:
                return existing
    raise RunBusy(f"another process keeps creating runs of {run.pipeline} with these parameters; try again")


Submission = tuple[RunRecord, list[InstanceRecord], list[PartitionRecord]]


def submission(
    pipe: PipelineDef,
    ref: str,
    params: Mapping[str, Any] | None = None,
    *,
    from_text: bool = False,
    partition_size: int = BOUND,
    workdir: str | None = None,
    graphs: list[Graph] | None = None,
    executor: str | None = None,
) -> Submission:
    """A new submitted run of ``pipe`` (loadable as ``ref``) as records: the run, its instances
    and its partitions, ready for the store (the graph is appended to ``graphs`` if given)."""
    bound = pipe.bind(params or {}, from_text=from_text)
    graph = pipe.build(bound, workdir=workdir or os.getcwd())
    if graphs is not None:
        graphs.append(graph)
    pjson = P.to_json(pipe.params, bound)
    parts = partition([n.id for n in graph], {n.id: n.upstream for n in graph}, partition_size)
    number = {iid: k for k, ids in enumerate(parts) for iid in ids}
    key = run_key(ref, {"params": pjson, "instances": sorted(graph.nodes), "submitted": True})
    run = new_run(pipe, ref, pjson, key, graph, workdir, partitions=len(parts))
    if executor is not None:
        run = dataclasses.replace(run, executor=executor)
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


def fit(
    graph: Graph,
    pipe: PipelineDef,
    executor: Choice | None,
    workers: int | None,
    resources: Mapping[str, int] | None,
) -> tuple[Placement, Capacity]:
    """Where each task runs, the engines opened, every task checked to fit its executor
    (before any run exists), and the capacity the run's core admits attempts by."""
    choice = executor or choose()
    if pipe.executor is None and choice.default == "local" and all(n.task.executor is None for n in graph):
        return Placement(), fit_capacity(graph, workers, resources)
    return place(
        graph,
        choice,
        pipeline_executor=pipe.executor,
        workers=workers,
        resources=resources,
        log_dir=str(home() / "logs"),
    )


LEASE_TTL = 30.0


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
    release: bool = True,
    cache: bool = True,
) -> RunResult:
    """Drive a prepared run to its end on local worker processes. ``release=False`` keeps the
    run's lease when it ends: the caller releases it (``release``) once it has told the user,
    so that a process killed in between leaves a run the next ``prepare`` shows as unseen."""
    engines = prepared.placement.engines
    tickets = Tickets(prepared.store.url, prepared.placement.api, home()) if engines else None
    driver = RunDriver(
        prepared.store,
        prepared.run,
        prepared.graph,
        prepared.capacity,
        home=home(),
        force=force,
        retry=retry,
        grace=grace,
        lease_ttl=LEASE_TTL,
        on_change=on_change,
        epoch=prepared.epoch,
        release=release,
        engines=engines,
        default_executor=prepared.placement.default,
        tickets=tickets,
        storage=prepared.placement.storage,
        cache=cache,
    )
    if on_start is not None:
        on_start(driver)
    try:
        with interrupts(driver):
            return driver.drive()
    finally:
        prepared.placement.close()
        if tickets is not None:
            tickets.close()


def run(
    target: str | PipelineDef,
    params: Mapping[str, Any] | None = None,
    *,
    db: str | None = None,
    workers: int | None = None,
    force: bool = False,
    new: bool = False,
    resources: Mapping[str, int] | None = None,
    executor: Choice | str | None = None,
    cache: bool = True,
) -> RunResult:
    """Run a pipeline to its end on this machine (its tasks on ``executor``: a name like
    ``"dask"``, or a ``choose(...)``; default: the project's) and return how it ended.

    If another process is driving the same pipeline with the same parameters, this follows
    that run to its end instead of starting a second one (and resumes it if that process dies).
    ``cache=False`` reuses nothing from the result cache (``conveyor.cache``).
    The store stays open for the next call in this process (a notebook, a script running many
    pipelines): one engine per database, as SQLAlchemy recommends.
    """
    store = _store(db)
    while True:
        try:
            prepared = prepare(
                target,
                params,
                store=store,
                new=new,
                force=force,
                workers=workers,
                resources=resources,
                executor=choose(executor) if isinstance(executor, str) else executor,
            )
        except RunBusy as busy:
            if busy.run_id is None:
                raise
            followed = follow(store, busy.run_id)
            if followed is not None:
                return followed
            continue
        if prepared.unseen:
            release(prepared)
            shown = follow(store, prepared.run.id)
            assert shown is not None
            return shown
        return drive(prepared, force=force, cache=cache)


_STORES: dict[tuple[int, str], Store] = {}


def _store(db: str | None) -> Store:
    url = db or default_url()
    key = (os.getpid(), url)  # a forked child opens its own
    store = _STORES.get(key)
    if store is not None and url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        store.close()  # the file was deleted (rm -rf .conveyor): start a fresh one
        store = None
    if store is None:
        store = _STORES[key] = open_embedded(url)
    return store


def reopen(
    run_id: str,
    *,
    store: Store | None = None,
    db: str | None = None,
    workers: int | None = None,
    resources: Mapping[str, int] | None = None,
    executor: Choice | None = None,
) -> Prepared:
    """An existing run, with its pipeline loaded again from where it was defined."""
    store = store or open_embedded(db)
    record = store.get_run(run_id)
    epoch = _lease(store, record)
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
    with _workdir(record.workdir):
        placement, capacity = fit(graph, pipe, executor, workers, resources)
    return Prepared(store, record, graph, True, capacity, epoch, placement=placement)


def release(prepared: Prepared) -> None:
    """Give back the run's lease taken by ``prepare`` (after a ``drive(release=False)``)."""
    prepared.placement.close()  # closed by its driver already, if it drove
    if prepared.epoch is not None:
        prepared.store.release(prepared.run.id, prepared.epoch)


def follow(store: Store, run_id: str, *, every: float = 0.25) -> RunResult | None:
    """Wait for another process to drive ``run_id`` to its end and return how it ended; None
    as soon as no live process holds its lease (then resume it: ``prepare`` again)."""
    started = time.time()
    while True:
        run = store.get_run(run_id)
        if run.state not in OPEN and not _held(run):
            failed = [(i.label, tail(i.error)) for i in store.instances(run_id) if i.state == "failed"]
            took = (run.ended_at or time.time()) - (run.started_at or started)
            return RunResult(run.id, run.state, dict(run.counts), failed, took)
        if not _held(run):
            return None
        time.sleep(every)


@contextlib.contextmanager
def _workdir(path: str) -> Iterator[None]:
    if not path or not os.path.isdir(path) or os.path.samefile(path, os.getcwd()):
        yield
        return
    os.chdir(path)  # the run's relative targets and imports resolve where it was started
    yield


__all__ = [
    "ConveyorError",
    "Prepared",
    "RunBusy",
    "RunResult",
    "drive",
    "follow",
    "prepare",
    "release",
    "reopen",
    "run",
    "submit",
]
