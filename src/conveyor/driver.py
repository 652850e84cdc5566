"""The driver: runs one run's state machine against the store and the local executor.

One loop, one thread: feed events to the core, persist the changes it made in one transaction
(group commit, fenced by the run's lease epoch), and only then carry out its commands.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.cache import RunCache
from conveyor.core import (
    AttemptCancelled,
    AttemptFailed,
    AttemptLost,
    AttemptSucceeded,
    Cancel,
    CancelRequested,
    Change,
    Event,
    Execute,
    Finished,
    InstanceSpec,
    Prior,
    RetryRequested,
    RunMachine,
    Start,
    State,
    Tick,
    Wake,
)
from conveyor.errors import StaleEpochError, StoreError
from conveyor.executors.batch import BatchExecutor
from conveyor.executors.local import LocalExecutor
from conveyor.executors.mux import Executors
from conveyor.executors.placing import lend
from conveyor.executors.port import Executor, Launch, Lost, Placed, Report, Unknown
from conveyor.graph import Graph
from conveyor.owners import owner_is_dead, owner_name
from conveyor.provenance.record import record_inputs
from conveyor.recorder import Recorder
from conveyor.resources import Capacity
from conveyor.runner import GRAPHS, NEVER_STARTED, Job, Outcome
from conveyor.store import Batch, Store
from conveyor.store.records import (
    CLAIM_TTL,
    AttemptRecord,
    Holder,
    PartitionRecord,
    RunRecord,
    TransitionRecord,
)
from conveyor.targets import FileTarget, done_among, flatten
from conveyor.tasks import TaskDef

if TYPE_CHECKING:
    from conveyor.executors.tickets import Tickets

S = State
_TERMINAL = frozenset(st for st in State if st.terminal)
_ENDED = {
    S.SUCCEEDED: "succeeded",
    S.RETRY_WAIT: "failed",
    S.FAILED: "failed",
    S.READY: "lost",
    S.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class Lease:
    """A scheduler drives one partition of a submitted run under this lease (see ``scheduler``)."""

    partition: PartitionRecord  # as claimed: its epoch fences every write
    ttl: float = 2.0  # renewed every third of it
    heartbeat: float = 1.0  # runners beat this often while an attempt runs
    lost_after: float = 3.0  # an adopted attempt silent this long is lost
    on_turn: Callable[[float], None] | None = None  # called every loop turn (the registry's beat)
    say: Callable[[str], None] = print  # the scheduler's log


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    state: str  # succeeded | failed | cancelled; a partition's: done | failed | cancelled
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, last lines of error)
    elapsed: float = 0.0

    def _repr_html_(self) -> str:
        """In a notebook: the state, a bar of the counts, and each failed task's error."""
        from conveyor.display import result_html

        return result_html(self.run_id, self.state, self.counts, self.elapsed, self.failed)


#: A scheduler retries an unreachable store at least this often (seconds): a cheap refused
#: connection, so that it carries on within a second of the store's return.
RETRY_MAX = 0.8

_FAULT = os.environ.get("CONVEYOR_FAULT", "")


def _fault(point: str, count: int) -> None:
    """Crash tests: ``CONVEYOR_FAULT=after-commit:7`` SIGKILLs this process at that point."""
    if _FAULT and f"{point}:{count}" == _FAULT:
        os.kill(os.getpid(), signal.SIGKILL)


def _queueable(task: TaskDef) -> bool:
    """May an attempt of ``task`` wait queued on a busy worker? Only with the default resources
    (one cpu) and no timeout: its time would start before the attempt does."""
    r = task.resources
    return r.cpu == 1 and not r.memory and not r.gpu and not r.custom and task.timeout is None


def tail(text: str | None, lines: int = 6) -> str:
    if not text:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class RunDriver:
    def __init__(
        self,
        store: Store,
        run: RunRecord,
        graph: Graph,
        capacity: Capacity,
        *,
        home: Path,
        force: bool = False,
        retry: bool = False,
        grace: float = 10.0,
        lease_ttl: float = 30.0,
        on_change: Callable[[Change, str], None] | None = None,
        lease: Lease | None = None,
        epoch: int | None = None,
        release: bool = True,
        executor: Executor | None = None,
        engines: Mapping[str, Executor] | None = None,
        default_executor: str = "local",
        tickets: Tickets | None = None,
        storage: str | None = None,
        cache: bool = True,
    ) -> None:
        """``epoch``: the run's lease, already taken by this process (else ``drive`` takes
        it); ``release=False``: keep it when the run ends (the caller releases it).
        ``executor``: a pool shared with other drivers, which this one does not own (a
        scheduler's); they are driven turn by turn (``begin``, ``step``, ``feed``, ``end``).
        ``engines``: executors other than local worker processes, by name, which this driver
        owns and closes; a task runs on its own ``executor=``, else on ``default_executor``.
        ``tickets``: how a runner on an engine reports (the execution API's address and its
        attempt's token); None: it writes to the store itself. ``cache=False`` (``--no-cache``):
        take nothing from the result cache (``conveyor.cache``).
        ``storage``: where runners on engines save results (an fsspec URL they and this
        process both reach); None: the run's artifacts folder."""
        self.store = store
        self.run = run
        self.graph = graph
        self.capacity = capacity
        self.home = home
        self.force = force
        self.retry = retry
        self.grace = grace
        self.lease = lease
        self.lease_ttl = lease.ttl if lease else lease_ttl
        self.on_change = on_change
        self._stop = False
        self.log_dir = home / "logs" / run.id
        self.artifact_dir = str(home / "artifacts" / run.id)
        self.machine: RunMachine | None = None
        self.started = time.time()
        self._cancel_requested = 0
        self._results: dict[str, str | None] = {}
        self._errors: dict[str, str] = {}
        self._log_dirs: dict[str, str] = {}
        self._times: dict[str, tuple[float | None, float | None]] = {}  # started_at, ended_at
        self._log_root = str(self.log_dir)
        self._epoch = epoch or 0
        self._held = epoch is not None
        self._release = release
        self._own: set[str] | None = None  # a partition's instances
        self._waited: dict[tuple[str, int], str] = {}  # attempts that took another run's outcome
        self._preempted: dict[tuple[str, int], str] = {}  # attempts stopped for team quotas: why
        self._outputs: dict[tuple[str, int], str] = {}  # what succeeded attempts' targets hold
        self._claiming = False  # this driver claims its attempts' instance ids (``_claims``)
        self._commit_every = self.lease_ttl / 3
        self._adopt_since = 0.0
        self._owner = owner_name()
        self._shared = executor
        self._engines = dict(engines or {})
        self._default_executor = default_executor
        self._tickets = tickets
        self._storage = f"{storage.rstrip('/')}/artifacts/{run.id}" if storage else None
        self.executor: Executor | None = None
        self.finished: Finished | None = None
        self._events: list[Event] = []
        self._adopting: dict[str, int] = {}  # attempts a dead or stalled scheduler left running
        self._adopt_poll = 0.0
        self._run_cols: dict[str, Any] = {}
        self._image: str | None = None  # the container image recorded on the run
        self._wake_at: float | None = None
        self._turned = 0.0
        self._lost_lease = False
        self._use_cache = cache
        self._cache: RunCache | None = None

    # -- progress, for the CLI ------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        m = self.machine
        return {str(k): v for k, v in m.counts.items()} if m else {}

    def request_cancel(self) -> None:
        self._cancel_requested += 1

    def preempt(self, instance: str, attempt: int, reason: str) -> bool:
        """Stop a running attempt so that its resources return to a team that waited for them
        (team quotas): it is cancelled as a cancel would, and then counts as lost through no
        fault of its own, so the task runs again later without a retry used. False if that
        attempt is not running (any more)."""
        machine, executor = self.machine, self.executor
        if machine is None or executor is None or (instance, attempt) in self._preempted:
            return False
        inst = machine.instances.get(instance)
        if inst is None or inst.state is not S.RUNNING or inst.attempts != attempt:
            return False
        self._preempted[instance, attempt] = reason
        executor.cancel(instance, attempt, self.grace, time.time())
        return True

    def request_stop(self) -> None:
        """Stop driving (the scheduler is shutting down): give the lease back for another
        scheduler to take at once; running attempts finish and their runners record them."""
        self._stop = True

    # -- the run ------------------------------------------------------------------------------
    def drive(self) -> RunResult:
        """Drive the run (or the partition) to its end on an executor of its own."""
        self.begin()
        try:
            while not self.step():
                self.wait()
        except StaleEpochError:
            self._lost_lease = True
            raise
        finally:
            self.let_go()
        return self.end()

    # -- step by step: several drivers share one loop and one executor (a scheduler's) --------
    def begin(self) -> None:
        """Read the run's state, build the machine, the first events and the executor."""
        store, run, lease = self.store, self.run, self.lease
        part = lease.partition if lease else None
        records = store.instances(run.id)
        if part is None:
            if not self._held:
                self._epoch = store.acquire(run.id, owner_name(), self.lease_ttl, is_dead=owner_is_dead)
            own = None
            nodes = self.graph.nodes
        else:
            self._epoch = part.epoch
            # The instances of the partitions it needs are done: their results are inputs here.
            own = self._own = {r.id for r in records if r.partition == part.number}
            nodes = {k: v for k, v in self.graph.nodes.items() if k in own}
            self._results = {r.id: r.result for r in records if r.result is not None and r.id not in own}
        # A new run's instances are all pending and untouched: the machine's default needs no Prior.
        touched = [r for r in records if not r.untouched and (own is None or r.id in own)]
        prior = {
            r.id: Prior(S(r.state), r.attempts, r.failures, r.lost, r.not_before)
            for r in touched
            if r.id in nodes
        }
        self._results.update({r.id: r.result for r in touched if r.result is not None})
        self._times = {r.id: (r.started_at, r.ended_at) for r in touched}
        self._errors.update({r.id: r.error for r in touched if r.error})
        specs = [
            InstanceSpec(
                n.id,
                tuple(n.upstream) if own is None else tuple(u for u in n.upstream if u in own),
                n.task.priority,
                n.task.resources,
                n.task.retries,
                n.task.retry_delay,
                queueable=_queueable(n.task),
            )
            for n in self.graph
            if own is None or n.id in own
        ]
        # Which targets exist, before any worker starts: a store that cannot be reached is a
        # one-line error that leaves nothing running.
        done = frozenset() if self.force else self._targets_done(prior)
        reused: dict[str, str] = {}  # the result cache's: instances that take its entries' outputs
        cache = self._cache = RunCache.open(store, run, self.graph, reuse=self._use_cache and not self.force)
        if cache is not None:
            done, reused = cache.start(own, prior, done, self._results)
        # The runners record their attempts themselves, in every mode: an attempt's end lands
        # even if this process dies, and they claim instance ids shared with other runs.
        # Under `conveyor run` its driver claims instance ids and records ends; the runners beat,
        # and write what they finish only if the driver died (``Recorder.deferred``).
        self._claiming = lease is None and self._shared is None
        # a commit at least this often: it renews the run's lease, and its claims when it has them
        self._commit_every = min(self.lease_ttl, CLAIM_TTL) / 3 if self._claiming else self.lease_ttl / 3
        recorder = Recorder(store.url, lease.heartbeat if lease else 1.0, deferred=self._claiming)
        executor = self.executor = self._shared or self._own_executor(recorder)
        self.machine = RunMachine(specs, self.capacity, prior, prefetch=executor.prefetch)
        now = time.time()
        events: list[Event] = []
        if self.retry or any(p.state in (S.FAILED, S.CANCELLED) for p in prior.values()):
            events.append(RetryRequested(now))
        events.append(Start(now, done, reused))
        # Attempts a dead or stalled driver left running: their runners record their ends, or
        # they never started, or their runners went silent (``_adopted`` tells which).
        adopted = {iid: p.attempts for iid, p in prior.items() if p.state is S.RUNNING}
        GRAPHS[run.id] = self.graph
        self.log_dir.mkdir(parents=True, exist_ok=True)
        run_cols: dict[str, Any] = {"state": "running", "ended_at": None, "error": None}
        if run.started_at is None:
            run_cols["started_at"] = now
        if lease is not None:
            run_cols = {}  # the store moves a submitted run's state as partitions are claimed and end
        self._events, self._adopting, self._run_cols = events, adopted, run_cols
        members = executor.members.values() if isinstance(executor, Executors) else [executor]
        batches = [m for m in members if isinstance(m, BatchExecutor)]
        if adopted and batches:  # engines that hold jobs find them by label, queued ones too
            jobs = [self._job(Execute(iid, n)) for iid, n in adopted.items()]
            for engine in batches:
                engine.adopt(jobs)
        self._adopt_poll = self._adopt_since = now

    def _own_executor(self, recorder: Recorder) -> Executor:
        local = LocalExecutor(self.capacity.cpu, str(self.log_dir), recorder=recorder)
        if not self._engines:
            return local
        lend(self._engines, recorder)
        return Executors({"local": local, **self._engines})

    def _launch(self, cmd: Execute, job: Job) -> tuple[Job, Launch]:
        """The job as its executor gets it, and how to launch it."""
        task = self.graph[cmd.instance].task
        assert self.machine is not None
        spec = self.machine.instances[cmd.instance].spec
        name = task.executor or self._default_executor
        member = self._engines.get(name)
        if member is None and isinstance(self.executor, Executors):  # a scheduler's shared pool
            member = self.executor.members.get(name)
        local = name == "local" or isinstance(member, LocalExecutor)  # Spark's drivers are local too
        # A batch engine's job outlives this process and reports to the API itself: never deferred.
        batch = isinstance(member, BatchExecutor)
        deferred = self._claiming and not batch
        ticket = None if local or self._tickets is None else self._tickets(job, deferred=deferred)
        if not local and self._storage is not None:
            job = dataclasses.replace(job, artifact_dir=self._storage)
        image = member.image if isinstance(member, BatchExecutor) else None
        if image and image != self._image:  # the run records the image its attempts ran in
            self._image = self._run_cols["image"] = image
        team = self.run.team or ""
        return job, Launch(task.timeout, task.resources, spec.queueable, ticket, name, team, task.network)

    def step(self) -> bool:
        """One turn: feed the events to the core, commit its changes, then carry out its
        commands. True when the driving is over (finished, or stopping)."""
        if self.finished is not None or self._stop:
            return True
        machine, executor, lease, adopted = self.machine, self.executor, self.lease, self._adopting
        assert machine is not None and executor is not None
        events = self._events
        now = time.time()
        if lease is not None and lease.on_turn is not None:
            lease.on_turn(now)
        if now >= self._adopt_poll and (adopted or lease is not None):
            if adopted:
                events.extend(self._adopted(adopted, now))
            if lease is not None and not self._cancel_requested and self._cancel_asked():
                self._cancel_requested = 1  # `conveyor cancel`: as a first Ctrl-C
            self._adopt_poll = now + min(lease.heartbeat if lease else 0.25, 0.5)
        if self._cancel_requested == 1 and not machine.cancelling:
            events.append(CancelRequested(now))
        if self._cancel_requested >= 2:
            events.extend(self._abort(executor, now))
        machine.prefetch = executor.prefetch if executor.quick else 0
        if machine.granted:  # team quotas granted attempts since the last turn: they start now
            events.append(Tick(now))
        commands = machine.handle(*events)
        self._events = []
        batch = self._batch(machine.drain_changes())
        if self._run_cols:
            batch.run.update(self._run_cols)
            self._run_cols = {}
        finished = None
        for cmd in commands:
            if isinstance(cmd, Finished):
                finished = cmd
                if lease is None:
                    batch.run.update(self._run_end(cmd, now))
            elif isinstance(cmd, Wake):
                self._wake_at = cmd.at
        holders: dict[str, Holder] = {}
        if self._claiming:
            self._claims(commands, batch)
        if batch or now - self._last_commit > self._commit_every:
            holders = self._commit(batch, now)
            if self._cache is not None and batch.attempts_ended:
                self._cache.committed(batch.attempts_ended, self._results)
        if finished is not None:
            _fault("finished", 1)  # the end is durable; nobody has been told yet
        self.finished = finished
        for cmd in commands:  # effects, only after their transitions are durable
            if isinstance(cmd, Execute):
                job, launch = self._launch(cmd, self._job(cmd, holders.get(cmd.instance)))
                executor.submit(job, launch, now)
            elif isinstance(cmd, Cancel):
                executor.cancel(cmd.instance, cmd.attempt, self.grace, now)
        self._turned = now
        return finished is not None

    def deadline(self) -> float:
        """Until when the executor may be waited on before this driver's next turn."""
        deadline = self._turned + 0.25
        if self._wake_at is not None and self._wake_at < deadline:
            deadline = self._wake_at
        return deadline

    def wait(self) -> None:
        """Wait on the driver's own executor until something ends or a timer is due."""
        executor = self.executor
        assert executor is not None
        deadline = self.deadline()
        timer = executor.next_deadline()
        if timer is not None and timer < deadline:
            deadline = timer
        for item in executor.poll(max(deadline - time.time(), 0.0)):
            self.feed(item)
        self.tick()

    def owns(self, item: Report) -> bool:
        """Is this executor's report about one of this driver's attempts?"""
        job = item if isinstance(item, Outcome) else item.job
        return job.run_id == self.run.id and (self._own is None or job.instance in self._own)

    def owns_job(self, job: Job) -> bool:
        return job.run_id == self.run.id and (self._own is None or job.instance in self._own)

    def feed(self, item: Report) -> None:
        """An attempt of this driver's ended or was lost: an event for its next turn. One the
        engine lost track of is adopted: the store tells how it ended (``_adopted``). Where an
        engine has an attempt is recorded on it at once (a hint: an outage just skips it)."""
        if isinstance(item, Placed):
            job = item.job
            try:
                self.store.place_attempt(job.run_id, job.instance, job.attempt, item.where)
            except StoreError:
                pass  # the next placement, or the attempt's end, says more
            return
        if isinstance(item, Unknown):
            self._adopting[item.job.instance] = item.job.attempt
            self._adopt_poll = min(self._adopt_poll, time.time())
            return
        self._events.append(self._event(item))

    def tick(self) -> None:
        """After waiting: a timer of the core (a backoff's ``Wake``) that came due."""
        if self._wake_at is not None and time.time() >= self._wake_at:
            self._events.append(Tick(time.time()))
            self._wake_at = None
        if self._adopting and self._wake_at is None:
            self._wake_at = self._adopt_poll

    def let_go(self) -> None:
        """Stop using the executor: at the end, on a lost lease, on stopping, on an error."""
        executor, lease, run = self.executor, self.lease, self.run
        if executor is None:
            return
        self.executor = None
        if self._shared is not None:
            if self.finished is None:  # their runners record what they finish, if still current
                executor.drop(self.owns_job)
        elif lease is not None and (self._lost_lease or self._stop):
            executor.detach()  # their runners record what they finish, if still current
        else:
            executor.close(kill=self.finished is None)
        if self._shared is None:
            GRAPHS.pop(run.id, None)  # a shared executor's owner keeps it while others need it
        if self.finished is not None and lease is None and self._release:
            self.store.release(run.id, self._epoch)

    def end(self) -> RunResult:
        """Record the end (a partition's; a run's went with its last commit), or hand over."""
        store, run, lease, finished = self.store, self.run, self.lease, self.finished
        part = lease.partition if lease else None
        now = time.time()
        if finished is None:  # stopped: hand the partition over
            assert part is not None
            store.release_partition(run.id, part.number, self._epoch)
            return RunResult(run.id, "stopped", self.counts(), [], time.time() - self.started)
        record_inputs(store, run.id, self.graph, self._own, run.workdir)
        failed = [(self.graph[i].label, tail(self._errors.get(i))) for i in finished.failed]
        if part is not None:
            end = self._run_end(finished, now)
            state = {"succeeded": "done"}.get(finished.state, finished.state)
            self._retrying(lambda: store.end_partition(run.id, part.number, self._epoch, state, end["error"]))
            return RunResult(run.id, state, self.counts(), failed, time.time() - self.started)
        return RunResult(run.id, finished.state, self.counts(), failed, time.time() - self.started)

    _last_commit = 0.0
    _commits = 0

    def _commit(self, batch: Batch, now: float) -> dict[str, Holder]:
        self._commits += 1
        _fault("before-commit", self._commits)
        holders: dict[str, Holder] = {}
        if self.lease is None:
            holders = self.store.commit(self.run.id, self._epoch, batch, lease_until=now + self.lease_ttl)
        else:
            number = self.lease.partition.number
            self._retrying(
                lambda: self.store.commit(
                    self.run.id,
                    self._epoch,
                    batch,
                    lease_until=time.time() + self.lease_ttl,
                    partition=number,
                )
            )
        _fault("after-commit", self._commits)
        self._last_commit = now
        return holders

    def _retrying(self, write: Callable[[], Any]) -> Any:
        """A scheduler's write: while the store is unreachable, retry with backoff (the lease
        may expire meanwhile; then the store refuses the write and this driver stops)."""
        delay, since = 0.25, None
        while True:
            try:
                out = write()
            except StaleEpochError:
                raise
            except StoreError as exc:
                assert self.lease is not None
                if self._stop:
                    raise  # stopping: the lease will expire, another scheduler takes over
                since = since or time.time()
                self.lease.say(f"store unreachable ({exc}); retrying in {delay:.2f}s")
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if since is not None:
                assert self.lease is not None
                self.lease.say(f"store reachable again after {time.time() - since:.1f}s")
            return out

    def _cancel_asked(self) -> bool:
        try:
            return self.store.cancel_requested(self.run.id)
        except StoreError:
            return False  # the next commit waits for the store to come back

    def _adopted(self, adopted: dict[str, int], now: float) -> list[Event]:
        """Attempts another driver launched before it died: ended (their runner recorded the
        end), still running (beating), never started (no beat: lost, not counted against the
        task), or lost (silent for ``lost_after``)."""
        lost_after = self.lease.lost_after if self.lease else 3.0
        since = self._adopt_since
        try:
            statuses = self.store.attempt_status(self.run.id, list(adopted.items()))
        except StoreError:
            return []  # the next commit waits for the store to come back
        # what its engine still holds, queued or running (a batch job), is not lost for want of beats
        mine = self.executor.running() if self.executor is not None else []
        held = {(j.instance, j.attempt) for j in mine if j.run_id == self.run.id}
        events: list[Event] = []
        seen = set()
        for st in statuses:
            iid, n = st.instance_id, st.number
            seen.add(iid)
            if st.state == "succeeded":
                self._results[iid] = st.result
                events.append(AttemptSucceeded(now, iid, n))
            elif st.state in ("failed", "cancelled"):
                events.append(AttemptFailed(now, iid, n, st.error or st.state))
            elif st.state == "lost" and st.error == NEVER_STARTED:  # its worker said so
                events.append(AttemptLost(now, iid, n, NEVER_STARTED, blameless=True))
            elif st.state != "running":
                events.append(AttemptLost(now, iid, n, f"recorded {st.state}"))
            elif (iid, n) in held:
                continue  # queued or running in its engine (a batch job): its end will come
            elif st.heartbeat is None:
                # Its runner never beat: a scheduler's runner beats as it begins; under `conveyor
                # run`, one that ran under a second finished and recorded its end when its
                # driver died, and one whose driver had died begins nothing. So after a while,
                # it never started: not the task's fault.
                if now - (st.started_at if self.lease else since) <= lost_after:
                    continue
                why = NEVER_STARTED
                try:
                    if not self.store.declare_lost(self.run.id, iid, n, now, why):
                        continue
                except StoreError:
                    continue
                events.append(AttemptLost(now, iid, n, why, blameless=True))
            elif now - max(st.heartbeat or st.started_at, 0.0 if self.lease else since) > lost_after:
                why = "its driver stopped and its runner no longer beats"
                try:
                    if not self.store.declare_lost(self.run.id, iid, n, now, why):
                        continue  # its runner recorded the end just now: read it next time
                except StoreError:
                    continue
                events.append(AttemptLost(now, iid, n, why))
            else:
                continue
            del adopted[iid]
        for iid in [i for i in adopted if i not in seen]:  # no attempt row: it never started
            why = "the process driving the run stopped before starting it"
            events.append(AttemptLost(now, iid, adopted.pop(iid), why, blameless=True))
        return events

    def _abort(self, executor: Executor, now: float) -> list[Event]:
        """The second Ctrl-C: kill every attempt at once and record them cancelled."""
        running = executor.running()
        executor.close(kill=True)
        evs: list[Event] = [CancelRequested(now, "cancelled by the user (second Ctrl-C)")]
        evs += [AttemptCancelled(now, j.instance, j.attempt) for j in running]
        self._cancel_requested = 1
        return evs

    # -- helpers ------------------------------------------------------------------------------
    def _targets_done(self, prior: dict[str, Prior]) -> frozenset[str]:
        """The instances to check whose targets all exist: decided together, one query or
        listing per database or folder (``done_among``)."""
        recheck = (S.PENDING, S.FAILED, S.CANCELLED)
        own = self._own
        nodes = [
            node
            for node in self.graph
            if node.output is not None
            and (own is None or node.id in own)
            and (node.id not in prior or prior[node.id].state in recheck)
        ]
        if all(node.output.__class__ is FileTarget and node.output.is_local for node in nodes):
            return frozenset(node.id for node in nodes if node.output.exists())
        wanted = {node.id: flatten(node.output) for node in nodes}
        done = done_among(t for ts in wanted.values() for t in ts)
        return frozenset(iid for iid, ts in wanted.items() if ts and all(t in done for t in ts))

    def _claims(self, commands: list[Any], batch: Batch) -> None:
        """``conveyor run`` claims the instance ids its attempts execute in its group commit, and
        ends their claims as they end (its runners write nothing per attempt); the commit
        answers the instances another run executes now, with the attempt to wait for."""
        batch.claim_owner = self._owner
        batch.claim_start = [(c.instance, c.attempt) for c in commands if isinstance(c, Execute)]
        results = self._results
        batch.claim_end = [
            (e["instance_id"], e["number"], e["state"], results.get(e["instance_id"]), e["ended_at"])
            for e in batch.attempts_ended
        ]

    def _job(self, cmd: Execute, holder: Holder | None = None) -> Job:
        node = self.graph[cmd.instance]
        inputs = {name: self._results.get(up) for name, up in node.inputs.items()} if node.inputs else {}
        return Job(
            self.run.id,
            cmd.instance,
            cmd.attempt,
            self._log_path(cmd.instance, cmd.attempt),
            self.artifact_dir,
            inputs,
            self.run.target,
            self.run.params,
            self.run.workdir if self._shared is not None or self._engines else "",
            holder,
            self.force,
        )

    def _log_path(self, iid: str, attempt: int) -> str:
        folder = self._log_dirs.get(iid)
        if folder is None:
            folder = self._log_dirs[iid] = f"{self._log_root}/{self.graph[iid].task.name}-{iid}"
        return f"{folder}/{attempt}.log"

    def _event(self, item: Outcome | Lost) -> Event:
        key = (
            (item.instance, item.attempt)
            if isinstance(item, Outcome)
            else (item.job.instance, item.job.attempt)
        )
        why = self._preempted.pop(key, None) if self._preempted else None
        if why is not None and not (isinstance(item, Outcome) and item.status == "succeeded"):
            return AttemptLost(time.time(), key[0], key[1], why, blameless=True)
        if isinstance(item, Outcome):
            if item.waited_for:
                self._waited[item.instance, item.attempt] = item.waited_for
            if item.outputs:
                self._outputs[item.instance, item.attempt] = item.outputs
            if item.status == "succeeded":
                self._results[item.instance] = item.result
                return AttemptSucceeded(item.ended, item.instance, item.attempt)
            if item.status == "cancelled":
                return AttemptCancelled(item.ended, item.instance, item.attempt)
            return AttemptFailed(item.ended, item.instance, item.attempt, item.error or "failed")
        now, job = time.time(), item.job
        if item.timed_out:
            timeout = self.graph[job.instance].task.timeout
            return AttemptFailed(now, job.instance, job.attempt, f"timed out after {timeout:g}s")
        if item.reason.startswith("cancelled"):
            return AttemptCancelled(now, job.instance, job.attempt)
        return AttemptLost(now, job.instance, job.attempt, item.reason, blameless=item.blameless)

    def _batch(self, changes: list[Change]) -> Batch:
        """The changes as rows: every touched instance's row carries all its changing columns,
        so the store writes them all with one statement."""
        batch = Batch()
        if not changes:
            return batch
        m = self.machine
        assert m is not None
        run_id, on_change, errors, times = self.run.id, self.on_change, self._errors, self._times
        transitions, started, ended = batch.transitions, batch.attempts_started, batch.attempts_ended
        touched: dict[str, None] = {}
        for ch in changes:
            iid, old, new, at = ch.instance, ch.old, ch.new, ch.at
            transitions.append(TransitionRecord(iid, old._value_, new._value_, at, ch.cause, ch.attempt))
            touched[iid] = None
            if new is S.RUNNING:
                log = self._log_path(iid, ch.attempt)
                started.append(AttemptRecord(run_id, iid, ch.attempt, "running", at, None, None, log))
                times[iid] = (at, times.get(iid, (None, None))[1])
            elif old is S.RUNNING:
                end = {"instance_id": iid, "number": ch.attempt, "state": _ENDED[new], "ended_at": at}
                end["error"] = ch.error
                waited = self._waited.pop((iid, ch.attempt), None) if self._waited else None
                if waited:
                    end["waited_for"] = waited
                outputs = self._outputs.pop((iid, ch.attempt), None) if self._outputs else None
                if outputs:
                    end["outputs"] = outputs
                ended.append(end)
            if ch.error:
                errors[iid] = ch.error
            if new in _TERMINAL:
                times[iid] = (times.get(iid, (None, None))[0], at)
                if new is S.SUCCEEDED:
                    errors.pop(iid, None)
            if on_change is not None:
                on_change(ch, self.graph[iid].label)
        instances, results = m.instances, self._results
        for iid in touched:
            inst = instances[iid]
            started_at, ended_at = times.get(iid, (None, None))
            batch.instances.append(
                {
                    "id": iid,
                    "state": inst.state._value_,
                    "attempts": inst.attempts,
                    "failures": inst.failures,
                    "lost": inst.lost,
                    "not_before": inst.not_before,
                    "started_at": started_at,
                    "ended_at": ended_at,
                    "result": results.get(iid),
                    "error": errors.get(iid),
                }
            )
        return batch

    def _run_end(self, fin: Finished, now: float) -> dict[str, Any]:
        error = None
        if fin.failed:
            first = fin.failed[0]
            more = f" (and {len(fin.failed) - 1} more)" if len(fin.failed) > 1 else ""
            error = f"task {self.graph[first].label} failed{more}:\n{tail(self._errors.get(first))}"
        return {"state": fin.state, "ended_at": now, "error": error}
