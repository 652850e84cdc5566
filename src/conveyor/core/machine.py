"""The run state machine: ``handle(*events) -> commands``.

It knows the graph's shape, each instance's state and history, and the executor's capacity. It
decides what becomes ready, what is admitted under the resources, what is retried and when, and
when the run is over. Every state change goes through ``_move``, which checks the transition
table and appends to ``changes`` for the driver to persist before it carries out any command.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conveyor.core import retry
from conveyor.core.events import (
    AttemptCancelled,
    AttemptFailed,
    AttemptLost,
    AttemptSucceeded,
    CancelRequested,
    Event,
    RetryRequested,
    Start,
    Tick,
)
from conveyor.core.states import TRANSITIONS, State
from conveyor.errors import TransitionError
from conveyor.resources import Capacity, Resources

S = State


# -- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    pass


@dataclass(frozen=True, slots=True)
class Execute(Command):
    instance: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Cancel(Command):
    instance: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Wake(Command):
    """Send a ``Tick`` at this time (a backoff ends)."""

    at: float


@dataclass(frozen=True, slots=True)
class Finished(Command):
    state: str  # succeeded | failed | cancelled
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One state change, to be persisted before its effect."""

    instance: str
    old: State
    new: State
    at: float
    cause: str
    attempt: int
    error: str | None = None


# -- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InstanceSpec:
    id: str
    upstream: tuple[str, ...] = ()
    priority: int = 0
    resources: Resources = field(default_factory=Resources)
    retries: int = 0
    retry_delay: float = 1.0
    #: May wait queued on a busy worker (default resources, no timeout): see ``prefetch``.
    queueable: bool = False


@dataclass(frozen=True, slots=True)
class Prior:
    """An instance's recorded state when a run resumes."""

    state: State
    attempts: int = 0
    failures: int = 0
    lost: int = 0
    not_before: float = 0.0


class _Instance:
    __slots__ = (
        "attempts",
        "blameless",
        "down",
        "failures",
        "history",
        "id",
        "lost",
        "not_before",
        "spec",
        "state",
        "waiting",
    )

    def __init__(self, spec: InstanceSpec) -> None:
        self.id = spec.id
        self.spec = spec
        self.state = S.PENDING
        self.attempts = 0
        self.failures = 0
        self.lost = 0
        self.blameless = 0  # attempts lost in a row before they started (not counted)
        self.not_before = 0.0
        self.waiting = 0  # upstream instances not yet done
        self.down: list[_Instance] = []
        self.history: list[tuple[float, State, State, str]] = []


class RunMachine:
    """All scheduling decisions for one run."""

    def __init__(
        self,
        specs: Iterable[InstanceSpec],
        capacity: Capacity,
        prior: Mapping[str, Prior] | None = None,
        *,
        prefetch: int = 0,
    ) -> None:
        """``prefetch``: how many queueable instances may run beyond the cpu capacity, because
        the executor holds them queued behind running attempts (they take the cpu of the one
        they wait behind). They are admitted only when no bigger instance is waiting for room.
        The driver may change it between steps, as it learns how long attempts take.
        """
        self.capacity = capacity
        self.prefetch = prefetch
        self.instances: dict[str, _Instance] = {s.id: _Instance(s) for s in specs}
        for inst in self.instances.values():
            for up in inst.spec.upstream:
                self.instances[up].down.append(inst)
        for iid, p in (prior or {}).items():
            known = self.instances.get(iid)
            if known is not None:
                known.state, known.attempts, known.failures = p.state, p.attempts, p.failures
                known.lost, known.not_before = p.lost, p.not_before
        for inst in self.instances.values():
            inst.waiting = sum(not self.instances[u].state.done for u in inst.spec.upstream)
        self.changes: list[Change] = []
        self.counts: dict[State, int] = dict.fromkeys(State, 0)
        for inst in self.instances.values():
            self.counts[inst.state] += 1
        self.free_cpu = capacity.cpu
        self.free_memory = capacity.memory
        self.free_gpu = capacity.gpu
        self.free_custom = dict(capacity.custom)
        for inst in self.instances.values():
            if inst.state is S.RUNNING:  # its attempt is reported lost or finished after Start
                self._acquire(inst.spec.resources)
        self._ready: list[tuple[int, int, str]] = []
        self._seq = 0
        self._waits: list[tuple[float, str]] = []
        self._cancelling = False
        self._started = False
        self._finished: Finished | None = None
        self._now = 0.0
        #: Team quotas: None, or the instances granted their next attempt (the scheduler took
        #: their resources from the team's ledger); only those are admitted.
        self.granted: set[str] | None = None
        #: Ready instances that fit the executor but wait for a grant, in the order admission
        #: would take them (refreshed by each ``handle``).
        self.asking: list[str] = []

    # -- the one entry point ------------------------------------------------------------------
    def handle(self, *events: Event) -> list[Command]:
        out: list[Command] = []
        for ev in events:
            self._now = max(self._now, ev.at)
            self._dispatch(ev, out)
        if self._started and self._finished is None:
            self._promote_waits()
            if not self._cancelling:
                self._admit(out)
            if self._waits and not self._cancelling:
                out.append(Wake(self._waits[0][0]))
            self._check_finished(out)
        return out

    def _dispatch(self, ev: Event, out: list[Command]) -> None:
        if isinstance(ev, AttemptSucceeded):
            self._on_success(ev)
        elif isinstance(ev, AttemptFailed):
            self._on_failure(ev.instance, ev.attempt, ev.error, lost=False)
        elif isinstance(ev, AttemptLost):
            self._on_failure(ev.instance, ev.attempt, ev.reason, lost=True, blameless=ev.blameless)
        elif isinstance(ev, Tick):
            pass
        elif isinstance(ev, AttemptCancelled):
            inst = self._attempt_of(ev.instance, ev.attempt)
            if inst is not None:
                self._release(inst)
                self._move(inst, S.CANCELLED, "cancelled while running")
        elif isinstance(ev, Start):
            self._on_start(ev)
        elif isinstance(ev, CancelRequested):
            self._on_cancel(ev, out)
        elif isinstance(ev, RetryRequested):
            self._on_retry()
        else:  # pragma: no cover - a new event type without a handler
            raise TypeError(f"unknown event {ev!r}")

    # -- handlers ---------------------------------------------------------------------------
    def _on_start(self, ev: Start) -> None:
        self._started = True
        self._finished = None
        for iid in ev.done:
            inst = self.instances.get(iid)
            if inst is not None and inst.state is S.PENDING:
                self._move(inst, S.SKIPPED, "targets exist")
        for iid, run in ev.reused.items():
            inst = self.instances.get(iid)
            if inst is not None and inst.state is S.PENDING:
                self._move(inst, S.SUCCEEDED, f"reused from run {run}")
        # An instance that no unfinished downstream needs is skipped too (walk leaves upward).
        for inst in reversed(list(self.instances.values())):
            if inst.state is S.PENDING and inst.down and all(d.state.done for d in inst.down):
                self._move(inst, S.SKIPPED, "not needed: every downstream task is done")
        for inst in self.instances.values():
            if inst.state is S.PENDING and inst.waiting == 0:
                self._make_ready(inst, "upstream done")
            elif inst.state is S.RETRY_WAIT:
                heapq.heappush(self._waits, (inst.not_before, inst.id))
            elif inst.state is S.READY:
                self._queue(inst)

    def _on_success(self, ev: AttemptSucceeded) -> None:
        inst = self._attempt_of(ev.instance, ev.attempt)
        if inst is None:
            return
        self._release(inst)
        self._move(inst, S.SUCCEEDED, f"attempt {ev.attempt} succeeded")
        for d in inst.down:
            if d.waiting == 0 and d.state is S.PENDING and not self._cancelling:
                self._make_ready(d, f"upstream {inst.id} succeeded")

    def _on_failure(self, iid: str, attempt: int, error: str, *, lost: bool, blameless: bool = False) -> None:
        inst = self._attempt_of(iid, attempt)
        if inst is None:
            return
        self._release(inst)
        if self._cancelling:
            self._move(inst, S.CANCELLED, "cancelled while running", error=error)
            return
        if blameless:
            inst.blameless += 1
            if inst.blameless <= retry.MAX_BLAMELESS:
                self._move(inst, S.READY, f"attempt {attempt} lost, not counted: {error}", error=error)
                self._queue(inst)
                return
            error = f"lost {inst.blameless} times in a row before it started; last: {error}"
            inst.blameless = 0
        else:
            inst.blameless = 0
        if lost:
            inst.lost += 1
            if inst.lost <= retry.MAX_LOST:
                self._move(inst, S.READY, f"attempt {attempt} lost: {error}", error=error)
                self._queue(inst)
                return
            error = f"lost {inst.lost} times; last: {error}"
        else:
            inst.failures += 1
        s = inst.spec
        when = None if lost else retry.next_try(inst.failures, s.retries, s.retry_delay, self._now)
        if when is None:
            self._move(inst, S.FAILED, f"attempt {attempt} failed for good", error=error)
            return
        inst.not_before = when
        cause = f"attempt {attempt} failed; retry in {when - self._now:.3g}s"
        self._move(inst, S.RETRY_WAIT, cause, error=error)
        heapq.heappush(self._waits, (when, inst.id))

    def _on_cancel(self, ev: CancelRequested, out: list[Command]) -> None:
        self._cancelling = True
        self._ready.clear()
        self._waits.clear()
        for inst in self.instances.values():
            if inst.state in (S.PENDING, S.READY, S.RETRY_WAIT):
                self._move(inst, S.CANCELLED, ev.reason)
            elif inst.state is S.RUNNING:
                out.append(Cancel(inst.id, inst.attempts))

    def _on_retry(self) -> None:
        self._cancelling = False
        self._finished = None
        for inst in self.instances.values():
            if inst.state in (S.FAILED, S.CANCELLED):
                inst.failures = 0
                inst.lost = 0
                self._move(inst, S.PENDING, "retry requested")
                if self._started and inst.waiting == 0:
                    self._make_ready(inst, "upstream done")

    # -- mechanics --------------------------------------------------------------------------
    def _attempt_of(self, iid: str, attempt: int) -> _Instance | None:
        """The instance if ``attempt`` is its current running attempt; stale reports are ignored."""
        inst = self.instances.get(iid)
        if inst is None or inst.state is not S.RUNNING or inst.attempts != attempt:
            return None
        return inst

    def _move(self, inst: _Instance, new: State, cause: str, error: str | None = None) -> None:
        old = inst.state
        if (old, new) not in TRANSITIONS:
            story = "; ".join(f"{a}->{b} ({c})" for _, a, b, c in inst.history) or "no history"
            raise TransitionError(
                f"task instance {inst.id}: illegal transition {old} -> {new} ({cause}); history: {story}"
            )
        inst.state = new
        if new.done and not old.done:
            for d in inst.down:
                d.waiting -= 1
        self.counts[old] -= 1
        self.counts[new] += 1
        inst.history.append((self._now, old, new, cause))
        self.changes.append(Change(inst.id, old, new, self._now, cause, inst.attempts, error))

    def _make_ready(self, inst: _Instance, cause: str) -> None:
        self._move(inst, S.READY, cause)
        self._queue(inst)

    def _queue(self, inst: _Instance) -> None:
        self._seq += 1
        heapq.heappush(self._ready, (-inst.spec.priority, self._seq, inst.id))

    def _promote_waits(self) -> None:
        while self._waits and self._waits[0][0] <= self._now:
            _, iid = heapq.heappop(self._waits)
            inst = self.instances[iid]
            if inst.state is S.RETRY_WAIT:
                self._move(inst, S.READY, "backoff over")
                self._queue(inst)

    def _fits(self, r: Resources, cpu: int, mem: int, gpu: int, custom: dict[str, int]) -> bool:
        if r.cpu > cpu or r.memory > mem or r.gpu > gpu:
            return False
        return all(v <= custom.get(k, v) for k, v in r.custom.items())

    def _admit(self, out: list[Command]) -> None:
        """Start ready instances by priority while resources last.

        An instance that does not fit reserves what it needs, so smaller ones behind it only
        take what is left over and the big one is not starved.
        """
        ready = self._ready
        cpu, mem, gpu = self.free_cpu, self.free_memory, self.free_gpu
        custom = dict(self.free_custom) if self.free_custom else self.free_custom
        skipped: list[tuple[int, int, str]] = []
        ungranted: list[tuple[int, int, str]] = []
        granted = self.granted
        floor = 1 - self.prefetch  # the least free cpu a queueable instance may still start at
        while ready and (cpu > 0 or (cpu >= floor and not skipped)):
            item = heapq.heappop(ready)
            inst = self.instances[item[2]]
            if inst.state is not S.READY:
                continue
            r = inst.spec.resources
            if cpu <= 0 and inst.spec.queueable and r.cpu == 1 and self._fits(r, 1, mem, gpu, custom):
                pass  # a prefetch slot: it starts when the attempt it waits behind ends
            elif not self._fits(r, cpu, mem, gpu, custom):
                skipped.append(item)
                cpu, mem, gpu = cpu - r.cpu, mem - r.memory, gpu - r.gpu
                custom = {k: v - r.custom.get(k, 0) for k, v in custom.items()}
                continue
            cpu, mem, gpu = cpu - r.cpu, mem - r.memory, gpu - r.gpu
            if r.custom:
                custom = {k: v - r.custom.get(k, 0) for k, v in custom.items()}
            if granted is not None and inst.id not in granted:
                ungranted.append(item)  # it fits: its team's quota decides (it asks for a grant)
                continue
            self._acquire(r)
            if granted is not None:
                granted.discard(inst.id)
            inst.attempts += 1
            self._move(inst, S.RUNNING, f"attempt {inst.attempts} admitted")
            out.append(Execute(inst.id, inst.attempts))
        if granted is not None:
            self.asking = [item[2] for item in ungranted]
        for item in skipped + ungranted:
            heapq.heappush(ready, item)

    def next_ready(self) -> Resources | None:
        """The resources of the ready instance admission would look at first (None: none)."""
        for _, _, iid in heapq.nsmallest(8, self._ready):  # a heap: no sort of every ready one
            inst = self.instances[iid]
            if inst.state is S.READY:
                return inst.spec.resources
        return None

    def _acquire(self, r: Resources) -> None:
        self.free_cpu -= r.cpu
        self.free_memory -= r.memory
        self.free_gpu -= r.gpu
        for k, v in r.custom.items():
            if k in self.free_custom:
                self.free_custom[k] -= v

    def _release(self, inst: _Instance) -> None:
        r = inst.spec.resources
        self.free_cpu += r.cpu
        self.free_memory += r.memory
        self.free_gpu += r.gpu
        for k, v in r.custom.items():
            if k in self.free_custom:
                self.free_custom[k] += v

    def _check_finished(self, out: list[Command]) -> None:
        c = self.counts
        if c[S.RUNNING] or c[S.READY] or c[S.RETRY_WAIT]:
            return
        if c[S.CANCELLED] or self._cancelling:
            state = "cancelled"
        elif c[S.FAILED]:
            state = "failed"
        elif c[S.PENDING]:  # pragma: no cover - validate_state() forbids it
            raise TransitionError("run stalled: instances pending with nothing running")
        else:
            state = "succeeded"
        failed = tuple(i.id for i in self.instances.values() if i.state is S.FAILED)
        self._finished = Finished(state, failed)
        out.append(self._finished)

    # -- inspection ---------------------------------------------------------------------------
    @property
    def finished(self) -> Finished | None:
        return self._finished

    @property
    def cancelling(self) -> bool:
        """A cancel was requested; nothing new is admitted."""
        return self._cancelling

    def state_of(self, iid: str) -> State:
        return self.instances[iid].state

    def history(self, iid: str) -> list[tuple[float, State, State, str]]:
        return list(self.instances[iid].history)

    def drain_changes(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes

    def validate_state(self) -> None:
        """Check the machine's invariants; tests call this after every step."""
        running = [i for i in self.instances.values() if i.state is S.RUNNING]
        assert self.free_cpu == self.capacity.cpu - sum(i.spec.resources.cpu for i in running)
        assert self.free_memory == self.capacity.memory - sum(i.spec.resources.memory for i in running)
        queued = sum(i.spec.queueable for i in running)
        assert self.free_cpu >= -queued and self.free_memory >= 0 and self.free_gpu >= 0
        beyond = sum(i.spec.resources.cpu for i in running if not i.spec.queueable) - self.capacity.cpu
        assert beyond <= 0, "instances that cannot queue hold more cpu than there is"
        for i in self.instances.values():
            assert i.waiting == sum(not self.instances[u].state.done for u in i.spec.upstream), i.id
            if i.state in (S.READY, S.RUNNING, S.SUCCEEDED):
                assert i.waiting == 0, f"{i.id} is {i.state} with upstream not done"
        for st in State:
            assert self.counts[st] == sum(i.state is st for i in self.instances.values()), st
