"""The scheduler daemon: ``conveyor scheduler`` claims partitions of submitted runs and drives them.

Any number of schedulers share one store (PostgreSQL across machines; SQLite on one). Each
registers itself, then loops: claim the first claimable partition (its lease free or expired,
its upstream partitions done), drive it with a pool of local workers under the lease, record
its end, claim the next. A scheduler that dies or stalls stops renewing its lease; within the
lease's time-to-live another one claims the partition with the epoch incremented and adopts the
attempts left running, whose runners record their own ends. An unreachable store is retried with
backoff, never fatal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import backfills, logfiles
from conveyor import params as P
from conveyor.driver import RETRY_MAX, Lease, RunDriver
from conveyor.engine import Submission, default_workers, fit_capacity, submission
from conveyor.errors import ConveyorError, ParameterError, StaleEpochError, StoreError
from conveyor.executors.choice import Choice
from conveyor.executors.local import LocalExecutor
from conveyor.executors.mux import Executors
from conveyor.executors.placing import Placement, lend, place
from conveyor.executors.port import Executor
from conveyor.executors.tickets import Tickets
from conveyor.graph import Graph
from conveyor.limits import human
from conveyor.limits import read as read_limits
from conveyor.loader import load_pipeline
from conveyor.owners import owner_name
from conveyor.pipelines import LOGICAL_DATE
from conveyor.project import Entry, Project
from conveyor.project import find as find_project
from conveyor.quotas.gate import Gate
from conveyor.recorder import Recorder
from conveyor.resources import Capacity
from conveyor.runner import GRAPHS
from conveyor.schedules import Schedule, logical
from conveyor.store import Store
from conveyor.store.leases import Claim
from conveyor.store.records import RunRecord, SchedulerRecord

log = logging.getLogger("conveyor.scheduler")

#: Graphs of this many runs are kept for their next partitions.
GRAPHS_KEPT = 8

#: ``conveyor schedulers`` lists stopped and dead schedulers this long (seconds), then forgets them.
FORGET_AFTER = 24 * 3600.0

#: Seconds between two prunes of old runs' logs, when ``[logs] keep_days`` is set.
PRUNE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How a scheduler leases and polls. The defaults take a dead scheduler's partition over
    within about 2.5 s: the lease's ``ttl`` plus at most one ``poll``."""

    name: str = ""  # default: host:pid
    workers: int = 0  # default: one per CPU
    ttl: float = 2.0  # a lease lasts this long unless renewed (every third of it)
    poll: float = 0.5  # an idle scheduler looks for work this often
    heartbeat: float = 1.0  # runners beat this often while an attempt runs; the registry too
    lost_after: float = 3.0  # an adopted attempt whose runner is silent this long is lost
    partitions: int = 4  # fresh partitions driven at once (takeovers: up to twice as many)
    executor: Choice = field(default_factory=Choice)  # where tasks run, unless they say

    def __post_init__(self) -> None:
        if self.ttl <= 0 or self.poll <= 0 or self.heartbeat <= 0:
            raise ParameterError("scheduler settings: --lease, --poll and --heartbeat must be positive")
        if self.partitions < 1:
            raise ParameterError("scheduler settings: --partitions must be at least 1")
        if self.lost_after <= self.heartbeat:
            raise ParameterError("scheduler settings: --lost-after must be longer than --heartbeat")


class Scheduler:
    def __init__(
        self, store: Store, settings: Settings | None = None, project: Project | None = None
    ) -> None:
        """``project``: its pipelines with a ``schedule`` are fired by this scheduler (and any
        other one given the same project: each tick starts exactly one run)."""
        self.store = store
        self.project = project
        self.scheduled = [e for e in project.pipelines() if e.pipeline.schedule] if project else []
        self._last_fire = 0.0
        self._reload = False
        self.settings = s = settings or Settings()
        self.name = s.name or owner_name()
        self.workers = s.workers or default_workers()
        self.drivers: list[RunDriver] = []  # the partitions it drives, on one pool
        self._pool: Executors | None = None
        self._engines: dict[str, Executor] = {}  # the engines its runs' tasks use, opened once
        self._recorder = Recorder(store.url, self.settings.heartbeat)  # its workers' runners write
        self._tickets: Tickets | None = None
        self._stale_pool = False  # forked before a reload
        self._stopping = 0
        self._last_beat = 0.0
        self._outage: float | None = None  # since when the store has not answered
        self._graphs: dict[str, Graph] = {}
        self._gate = Gate(store, self.name)  # team quotas
        self._keep_days = _keep_days(project)
        self._last_prune = 0.0

    # -- the loop -----------------------------------------------------------------------------
    def serve(self, *, until_idle: bool = False) -> None:
        """Claim and drive partitions until stopped (SIGTERM, Ctrl-C); ``until_idle``: until no
        partition is left to claim."""
        now = time.time()
        rec = SchedulerRecord(self.name, socket.gethostname(), os.getpid(), now, now, "running", self.workers)
        self._store_call(lambda: self.store.register_scheduler(rec, stale_after=self.settings.ttl * 3))
        self._store_call(lambda: self.store.forget_schedulers(before=now - FORGET_AFTER))
        log.info("scheduler %s started: %d workers, store %s", self.name, self.workers, _safe(self.store.url))
        for e in self.scheduled:
            assert e.pipeline.schedule is not None
            log.info("schedule: %s %s", e.pipeline.name, e.pipeline.schedule.describe())
        try:
            self._loop(until_idle)
        finally:
            for driver in self.drivers:  # an unexpected error: their runners record what they finish
                driver.let_go()
            self.drivers = []
            if self._pool is not None:
                if self._stopping:
                    self._pool.detach()  # attempts handed over finish; their runners record them
                else:
                    self._pool.close()
                self._pool = None
            if self._tickets is not None:
                self._tickets.close()
                self._tickets = None
            self._gate.close()
            try:
                self.store.beat(self.name, time.time(), state="stopped")
            except StoreError:
                pass
            log.info("scheduler %s stopped", self.name)

    def _loop(self, until_idle: bool) -> None:
        """Each turn: beat, fire schedules, step backfills; every ``poll``, claim what this
        scheduler may take (a dead scheduler's partition first); turn every driver once; wait on
        the pool until an attempt ends or a driver's timer is due."""
        next_claim = 0.0
        while True:
            now = time.time()
            self.turn(now)
            if self._stopping:
                for driver in self.drivers:
                    driver.request_stop()
                if not self.drivers:
                    return
            elif now >= next_claim:
                next_claim = now + self.settings.poll
                claimed = self._claim()
                if not claimed and not self.drivers and until_idle:  # the backfills may submit
                    self._last_fire = 0.0
                    self.turn(time.time())
                    claimed = self._claim()
                    if not claimed:
                        return
                if not claimed and not self.drivers:
                    self.beat(time.time())
                    self._sleep(self.settings.poll)
                    continue
                if claimed:
                    next_claim = now  # there may be more: claim again on the next turn
            if not self.drivers:
                continue
            for driver in list(self.drivers):
                self._step(driver)
            self._wait(next_claim)

    def _claim(self) -> bool:
        """Claim one partition if this scheduler may: fresh work only while it drives fewer than
        ``partitions`` and its workers have room; a dead scheduler's (an expired lease) while it
        drives fewer than twice that, however busy. Returns whether it claimed one."""
        busy = bool(self.drivers)
        limit = self.settings.partitions
        if len(self.drivers) >= 2 * limit:
            return False
        fresh = len(self.drivers) < limit and (self._pool is None or self._pool.has_room)
        ttl = self.settings.ttl

        def call() -> Claim | None:
            return self.store.claim(self.name, ttl, takeover_only=not fresh)

        if busy:  # the drivers' own writes wait for an unreachable store, not this
            try:
                claim = call()
            except StoreError as exc:
                log.warning("no partition claimed: store unreachable (%s)", exc)
                return False
        else:
            claim = self._store_call(call)
        if claim is None:
            return False
        self._start(claim)
        return True

    def stop(self) -> None:
        """Stop claiming; hand the partitions being driven over to other schedulers."""
        self._stopping += 1
        for driver in self.drivers:
            driver.request_stop()

    def beat(self, now: float) -> None:
        if now - self._last_beat >= self.settings.heartbeat:
            self._last_beat = now
            try:
                self.store.beat(self.name, now)
            except StoreError:
                pass  # the driver's commit or the next claim reports the outage

    def turn(self, now: float) -> None:
        """Between claims, and on every turn of a driver's loop: beat, fire due schedules and
        step the backfills; once an hour, prune old logs (``[logs] keep_days``)."""
        self.beat(now)
        self._gate.turn(self.drivers, now)  # team quotas: grants, reasons, holdings returned
        if self._reload:
            self.reload()
        if now - self._last_fire >= self.settings.poll:
            self._last_fire = now
            try:
                if self.scheduled:
                    self.fire_schedules(now)
                self.step_backfills()
            except StoreError as exc:
                log.warning("schedules and backfills not stepped: store unreachable (%s)", exc)
        if self._keep_days is not None and now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            self.prune_logs(now)

    def prune_logs(self, now: float) -> None:
        """Delete the logs of runs that ended more than ``[logs] keep_days`` ago."""
        assert self._keep_days is not None
        try:
            done = logfiles.prune(self.store, now - self._keep_days * 86400)
        except StoreError as exc:
            log.warning("old logs not pruned: store unreachable (%s)", exc)
            return
        if done.files:
            log.info(
                "pruned %d log files (%s) of %d runs ended over %g days ago",
                done.files, human(done.bytes), done.runs, self._keep_days,
            )  # fmt: skip

    def request_reload(self) -> None:
        """Load the project's pipelines anew on the next turn (SIGHUP; ``conveyor server``'s
        reload)."""
        self._reload = True

    def reload(self) -> None:
        self._reload = False
        try:
            # without a project, one whose conveyor.toml was created here since (a server's child)
            current = self.project.reread() if self.project else find_project()
            if current is None:
                return
            entries = current.pipelines(fresh=True)
        except ConveyorError as exc:
            log.error("reload failed, keeping the pipelines loaded before: %s", exc)
            return
        self.project = current
        self.scheduled = [e for e in entries if e.pipeline.schedule]
        self._graphs.clear()
        self._stale_pool = True  # its workers hold the code imported before
        self._renew_pool()
        log.info("reloaded %d pipelines (%d scheduled)", len(entries), len(self.scheduled))

    def step_backfills(self) -> None:
        """Step every running backfill: follow its runs, submit the dates its limit allows.
        Several schedulers may step the same one; each step is written once."""
        for rec in self.store.list_backfills(state="running", limit=None):
            try:
                with _workdir(rec.workdir):
                    after = backfills.step(self.store, rec, load_pipeline)
            except StoreError:
                raise
            except ConveyorError as exc:
                log.error("backfill %s of %s not stepped: %s", rec.id, rec.pipeline, exc)
                continue
            except Exception as exc:  # its pipeline's code changed under it: keep serving the rest
                log.error(
                    "backfill %s of %s not stepped: %s: %s", rec.id, rec.pipeline, type(exc).__name__, exc
                )
                continue
            new = {s["run"] for s in after.slots} - {s["run"] for s in rec.slots}
            if new:
                log.info("backfill %s of %s: submitted %d runs", rec.id, rec.pipeline, len(new))
            if after.state != "running" and rec.state == "running":
                log.info("backfill %s of %s %s", rec.id, rec.pipeline, after.state)

    def fire_schedules(self, now: float) -> list[RunRecord]:
        """Start a run for every due tick of the project's schedules; exactly once per tick
        across schedulers (the store moves each schedule's cursor once). Returns the runs."""
        assert self.project is not None
        created: list[RunRecord] = []
        for entry in self.scheduled:
            sched = entry.pipeline.schedule
            assert sched is not None
            last = self.store.schedule_cursor(entry.target, now)
            ticks = sched.due(last, now)
            if not ticks:
                continue
            runs: list[Submission] = []
            with _workdir(str(self.project.root)):
                for tick in ticks:
                    try:
                        runs.append(self._scheduled_run(entry, tick))
                    except ConveyorError as exc:
                        log.error(
                            "schedule %s: no run for %s: %s", entry.pipeline.name, _at(tick, sched), exc
                        )
            if self.store.fire(entry.target, last, ticks[-1], runs):
                for run, _, _ in runs:
                    log.info("schedule %s: run %s for %s", entry.pipeline.name, run.id, run.params)
                created += [run for run, _, _ in runs]
        return created

    def _scheduled_run(self, entry: Entry, tick: float) -> Submission:
        pipe, sched = entry.pipeline, entry.pipeline.schedule
        assert sched is not None and self.project is not None
        params: dict[str, Any] = {}
        if pipe.takes_logical_date:
            when = logical(tick, sched.timezone).replace(tzinfo=None)
            kind = next(p.type.name for p in pipe.params if p.name == LOGICAL_DATE)
            params[LOGICAL_DATE] = when.date() if kind == "date" else when
        return submission(pipe, entry.target, params, workdir=str(self.project.root))

    # -- the partitions being driven ------------------------------------------------------------
    def _start(self, claim: Claim) -> None:
        """Start driving a claimed partition on the scheduler's pool, beside the others."""
        run, part = claim.run, claim.partition
        how = f"took over from {part.taken_from}" if claim.takeover else "claimed"
        log.info(
            "run %s partition %d (%d tasks): %s, epoch %d", run.id, part.number, part.size, how, part.epoch
        )
        driver = None
        try:
            with _workdir(run.workdir):
                graph = self._graph(run)
                pool = self._shared_pool(run)
                placement, capacity = self._place(run, graph)
                lend(placement.engines, self._recorder)
                for name, engine in placement.engines.items():
                    pool.members.setdefault(name, engine)
                driver = RunDriver(
                    self.store,
                    run,
                    graph,
                    capacity,
                    home=_home(run.workdir),
                    lease=Lease(
                        part,
                        ttl=self.settings.ttl,
                        heartbeat=self.settings.heartbeat,
                        lost_after=self.settings.lost_after,
                        say=lambda msg: log.warning("run %s partition %d: %s", run.id, part.number, msg),
                    ),
                    executor=pool,
                    default_executor=placement.default,
                    tickets=self._tickets_for(run) if placement.engines else None,
                    storage=placement.storage,
                )
                driver.begin()
                self._gate.enter(driver)
        except (ConveyorError, OSError) as exc:
            self._failed(driver, run, part.number, part.epoch, exc)
            return
        self.drivers.append(driver)

    def _step(self, driver: RunDriver) -> None:
        """One turn of one driver; at its end, record the partition's end and let it go."""
        run = driver.run
        assert driver.lease is not None
        number, epoch = driver.lease.partition.number, driver.lease.partition.epoch
        try:
            with _workdir(run.workdir):
                if not driver.step():
                    return
                driver.let_go()
                result = driver.end()
        except (ConveyorError, OSError) as exc:
            self._failed(driver, run, number, epoch, exc)
            return
        self._forget(driver)
        log.info(
            "run %s partition %d: %s in %.2fs (%s)",
            run.id,
            number,
            result.state,
            result.elapsed,
            ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()) if n),
        )

    def _failed(
        self, driver: RunDriver | None, run: RunRecord, number: int, epoch: int, exc: BaseException
    ) -> None:
        """A driver that cannot go on: it lost its lease, the store went away outside a retried
        write, or its partition failed (the pipeline no longer loads, a task cannot fit, ...)."""
        if driver is not None:
            driver.let_go()
            self._forget(driver)
        if isinstance(exc, StaleEpochError):
            log.warning("%s", exc)
            return
        if isinstance(exc, StoreError):
            log.warning(
                "run %s partition %d: %s; its lease will expire and a scheduler will claim it again",
                run.id,
                number,
                exc,
            )
            return
        error = str(exc)
        log.error("run %s partition %d failed: %s", run.id, number, error)
        try:
            self._store_call(lambda: self.store.end_partition(run.id, number, epoch, "failed", error))
        except StoreError:
            pass  # taken over meanwhile, or stopping: its lease expires

    def _forget(self, driver: RunDriver) -> None:
        if driver in self.drivers:
            self.drivers.remove(driver)
        if not any(d.run.id == driver.run.id for d in self.drivers):
            GRAPHS.pop(driver.run.id, None)
        self._renew_pool()

    def _renew_pool(self) -> None:
        """After a reload, stop the workers forked with the old code as soon as no partition
        uses them; the next claim forks new ones. (A partition claimed before that runs on the
        old workers.)"""
        if self._stale_pool and self._pool is not None and not self.drivers:
            self._pool.close()
            self._pool = None
            self._engines = {}
        if self._pool is None:
            self._stale_pool = False

    def _wait(self, next_claim: float) -> None:
        """Wait on the pool until an attempt ends, a driver's timer is due or it is time to claim;
        hand each report to the driver whose attempt it is."""
        pool = self._pool
        if pool is None or not self.drivers:
            return
        deadline = min(d.deadline() for d in self.drivers)
        timer = pool.next_deadline()
        if timer is not None and timer < deadline:
            deadline = timer
        if not self._stopping and next_claim < deadline:
            deadline = next_claim
        for item in pool.poll(max(deadline - time.time(), 0.0)):
            for driver in self.drivers:
                if driver.owns(item):
                    driver.feed(item)
                    break  # none: a driver that let go of it
        for driver in self.drivers:
            driver.tick()

    def _place(self, run: RunRecord, graph: Graph) -> tuple[Placement, Capacity]:
        """Where the run's tasks go: the engines they name, opened once for every run."""
        pipe = load_pipeline(run.target)
        choice = self.settings.executor
        if run.executor is not None:  # conveyor submit --executor
            choice = dataclasses.replace(choice, default=run.executor)
        if pipe.executor is None and choice.default == "local" and not any(n.task.executor for n in graph):
            return Placement(), fit_capacity(graph, self.workers, None)
        folder = str(_home(run.workdir) / "logs")
        return place(
            graph,
            choice,
            pipeline_executor=pipe.executor,
            workers=self.workers,
            resources=None,
            log_dir=folder,
            opened=self._engines,
        )

    def _tickets_for(self, run: RunRecord) -> Tickets:
        """How its runners on engines report: the configured execution API (a server on the
        same store, which outlives this scheduler), else one it serves itself on loopback."""
        if self._tickets is None:
            api = self.settings.executor.api
            if api is None:
                log.warning(
                    "no [executor] api: runners on engines report to this scheduler's own execution "
                    "API; attempts it launched cannot record their ends after it dies. Set "
                    "CONVEYOR_EXECUTION_API to a conveyor server's URL for results that outlive it"
                )
            self._tickets = Tickets(self.store.url, api, _home(run.workdir))
        return self._tickets

    def _shared_pool(self, run: RunRecord) -> Executors:
        """The scheduler's one pool of workers, for every partition it drives; its runners
        record each attempt under the lease the attempt's job carries."""
        if self._pool is None:
            folder = _home(run.workdir) / "logs" / ("scheduler-" + re.sub(r"[^\w.-]", "_", self.name))
            folder.mkdir(parents=True, exist_ok=True)
            local = LocalExecutor(self.workers, str(folder), recorder=self._recorder)
            self._pool = Executors({"local": local, **self._engines})
        return self._pool

    def _graph(self, run: RunRecord) -> Graph:
        """The run's graph, built once per scheduler: each of its partitions needs it."""
        graph = self._graphs.get(run.id)
        if graph is None:
            pipe = load_pipeline(run.target)
            graph = pipe.build(P.from_json(pipe.params, run.params))
            while len(self._graphs) >= GRAPHS_KEPT:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[run.id] = graph
        return graph

    # -- plumbing -------------------------------------------------------------------------------
    def _store_call(self, call: Callable[[], Any]) -> Any:
        """Call the store; while it does not answer, log it and retry with backoff (not while
        stopping: a scheduler asked to stop does not wait for the store)."""
        delay = 0.25
        while True:
            try:
                out = call()
            except StoreError as exc:
                if self._stopping or isinstance(exc, StaleEpochError):
                    raise
                if self._outage is None:
                    self._outage = time.time()
                log.warning("store unreachable (%s); retrying in %.2fs", exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if self._outage is not None:
                log.info("store reachable again after %.1fs", time.time() - self._outage)
                self._outage = None
            return out

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(0.05, end - time.monotonic()))


def _keep_days(project: Project | None) -> float | None:
    """``[logs] keep_days`` (or ``$CONVEYOR_LOG_KEEP_DAYS``): logs kept that long, then pruned."""
    try:
        return read_limits(project.root if project is not None else None).keep_days
    except ConveyorError as exc:
        log.error("old logs are not pruned: %s", exc)
        return None


def _at(tick: float, sched: Schedule) -> str:
    return logical(tick, sched.timezone).isoformat(timespec="minutes")


def _home(workdir: str) -> Path:
    """Logs and artifacts of a submitted run: ``$CONVEYOR_HOME``, else the submitter's
    ``.conveyor`` (every scheduler must see the project's directory: one machine, or a shared
    filesystem)."""
    env = os.environ.get("CONVEYOR_HOME")
    return Path(env).absolute() if env else Path(workdir or ".").absolute() / ".conveyor"


def _safe(url: str) -> str:
    from conveyor.store.connection import safe_url

    return safe_url(url)


@contextmanager
def _workdir(path: str) -> Iterator[None]:
    """The run's relative targets and imports resolve where it was submitted."""
    old = os.getcwd()
    if path and os.path.isdir(path):
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
