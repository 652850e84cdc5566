"""The local executor: a pool of persistent worker processes on this machine.

Each worker runs one attempt at a time. The pool enforces timeouts (the worker's whole process
group is killed and the worker replaced), cancels with a grace period (SIGTERM, then SIGKILL),
and reports a worker that died as a lost attempt.

Queued attempts. So that a worker never idles while the driver records one attempt's end and
sends the next, an attempt that asks for the default resources (one cpu, no timeout; the driver
says so with ``queueable=True``) may be sent to a busy worker, which starts it the moment its
current attempt ends. The driver admits such attempts beyond the cpu (``prefetch``) only while
attempts are quick (``quick``); they are RUNNING in the store from the moment they are sent.
The pool stays honest about cpu: it starts an attempt on an idle worker only while the cpu of
the attempts it has running leaves room, and a queued attempt only takes the place of the one
it waits behind. Nothing queues behind an attempt with a timeout. A queued attempt is taken
back before it starts (``Control``) when it is cancelled, when the attempt ahead of it turns
out long, or to move it to a worker that falls idle; if its worker dies before starting it, it
is sent again elsewhere. Attempts that fit nowhere yet wait in the pool (the backlog) until a
worker frees up.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from conveyor.executors.port import Launch, Lost
from conveyor.recorder import Recorder
from conveyor.resources import Resources, format_memory, machine_memory
from conveyor.runner import GRAPHS, Control, Job, Outcome, pack, worker_main

_ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
_FORKED = _ctx.get_start_method() == "fork"  # workers inherit the driver's GRAPHS

log = logging.getLogger(__name__)

#: Attempts a busy worker may hold queued behind the one it runs.
QUEUE_DEPTH = 4
#: Attempts queue only while attempts take less than this (seconds, a moving average): for
#: longer ones the driver's round trip costs little, and a queue would only delay an attempt of
#: higher priority that becomes ready meanwhile.
QUICK = 0.005
#: Nothing queues behind an attempt running longer than this (seconds); what already waits
#: behind it is taken back and goes to the next worker that frees up.
YOUNG = 0.02


@dataclass(slots=True, eq=False)
class _Slot:
    """One attempt sent to (or waiting for) a worker."""

    job: Job
    seq: int
    cpu: int
    timeout: float | None
    queueable: bool
    queued: bool = False  # sent behind another attempt, not to an idle worker
    revoked: bool = False  # taken back before it started; the worker's answer is still due
    deadline: float | None = None  # timeout of the running attempt
    since: float = 0.0  # when it became the worker's first attempt (it runs, as far as we know)
    kill_at: float | None = None  # end of a cancel's grace period
    cancelling: bool = False
    dropped: bool = False  # its driver let go of it: it runs on, its answer is not reported


class Channel:
    """Both directions between the pool and one worker, on two one-way pipes (cheaper per message
    than a socket pair). Quacks like a ``multiprocessing.connection.Connection``."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, obj: Any) -> None:
        self.writer.send(obj)

    def recv(self) -> Any:
        return self.reader.recv()

    def poll(self, timeout: float = 0.0) -> bool:
        return self.reader.poll(timeout)

    def fileno(self) -> int:
        return self.reader.fileno()

    def fds(self) -> list[int]:
        return [c.fileno() for c in (self.reader, self.writer) if not c.closed]

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def _worker(
    channel: Channel, index: int, log: str, control: Control, inherited: list[int], recorder: Recorder | None
) -> None:
    """A forked worker first closes the pool's ends of every pipe it inherited: when the process
    driving the run dies, its workers see their pipe closed and stop instead of waiting forever."""
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass
    worker_main(channel, index, log, control, recorder)


@dataclass(slots=True, eq=False)
class _Worker:
    index: int
    process: Any
    conn: Channel
    control: Control
    slots: deque[_Slot] = field(default_factory=deque)  # in the order sent; answers come in it
    outbox: list[tuple[Any, ...]] = field(default_factory=list)  # assigned, not yet sent
    graphs: frozenset[str] = frozenset()  # runs whose graphs it inherited when forked

    def active(self) -> list[_Slot]:
        return [s for s in self.slots if not s.revoked]


class LocalExecutor:
    """The executor port on this machine's processes (see ``conveyor.executors.port``)."""

    name: ClassVar[str] = "local"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Recorder | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``recorder``: the workers' runners record attempts in the store themselves (a
        scheduler's pool: results outlive the scheduler). No ``settings``: the pool's size is
        ``workers``."""
        self.size = workers
        self.log_dir = log_dir
        self.recorder = recorder
        self._workers: list[_Worker] = []
        self._backlog: deque[_Slot] = deque()
        self._dead: list[Lost] = []
        self._seq = 0
        self._unsent = False
        self._duration: float | None = None  # moving average of attempts' run time
        self._selector: selectors.BaseSelector | None = None

    @property
    def prefetch(self) -> int:
        """How many attempts beyond its cpu the pool can hold queued on busy workers."""
        return self.size * QUEUE_DEPTH

    @property
    def quick(self) -> bool:
        """Do attempts end quickly enough that queueing them pays (see ``QUICK``)?"""
        return self._duration is not None and self._duration < QUICK

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._selector = selectors.DefaultSelector()
        for i in range(self.size):
            self._workers.append(self._spawn(i))

    def _spawn(self, index: int) -> _Worker:
        down_r, down_w = _ctx.Pipe(duplex=False)
        up_r, up_w = _ctx.Pipe(duplex=False)
        parent, child = Channel(up_r, down_w), Channel(down_r, up_w)
        log = os.path.join(self.log_dir, f"worker-{index}.log")
        control = Control(_ctx)
        inherited = [fd for w in self._workers for fd in w.conn.fds()] + parent.fds()
        if _ctx.get_start_method() != "fork":
            inherited = []
        args = (child, index, log, control, inherited, self.recorder)
        proc = _ctx.Process(target=_worker, args=args, daemon=True)  # type: ignore[attr-defined]
        proc.start()
        child.close()
        w = _Worker(index, proc, parent, control, graphs=frozenset(GRAPHS) if _FORKED else frozenset())
        assert self._selector is not None
        self._selector.register(parent.reader, selectors.EVENT_READ, (w, True))
        self._selector.register(proc.sentinel, selectors.EVENT_READ, (w, False))
        return w

    def close(self, *, kill: bool = False) -> None:
        for w in self._workers:
            if kill or w.slots:
                self._kill(w)
            else:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                self._kill(w)
                w.process.join(timeout=2)
            w.conn.close()
        self._workers = []
        self._backlog.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def detach(self) -> None:
        """Let go of the workers without killing them (this process lost the right to act for
        their attempts): queued attempts are taken back, each worker finishes the attempt it
        runs (its runner records the end, if it is still current) and then exits.

        This process exits only once those workers have: a SQLite store's last connection to
        close deletes its write-ahead log, and a forked worker's connection does not count (its
        locks are not inherited), so the worker's end would be written into a deleted file. A
        process killed before it closes its connections deletes nothing: a second SIGTERM is safe."""
        going_on = []
        for w in self._workers:
            for slot in w.active():
                if not w.control.revoke(slot.seq):  # started: it goes on
                    job = slot.job
                    going_on.append(f"run {job.run_id} instance {job.instance} (worker pid {w.process.pid})")
            w.conn.close()
        if going_on:
            log.info(
                "waiting for %d running attempt%s to end and record it: %s; "
                "SIGTERM again to exit now and leave %s running",
                len(going_on),
                "" if len(going_on) == 1 else "s",
                ", ".join(going_on),
                "it" if len(going_on) == 1 else "them",
            )
        self._workers = []
        self._backlog.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def drop(self, match: Callable[[Job], bool]) -> None:
        """Let go of the attempts ``match`` picks, leaving the others (a pool shared by several
        drivers, one of which lost its lease or stops): those not started are taken back, those
        running finish (their runners record the end, if still current) and are not reported."""
        self._flush()
        self._backlog = deque(s for s in self._backlog if not match(s.job))
        for w in self._workers:
            for slot in w.active():
                if not match(slot.job):
                    continue
                if w.control.revoke(slot.seq):  # not started yet
                    slot.revoked = True
                else:
                    slot.dropped = True
                    slot.deadline = None  # its timeout is no longer this pool's business
        self._dead = [d for d in self._dead if not match(d.job)]

    # -- work -----------------------------------------------------------------------------------
    @property
    def idle(self) -> int:
        return sum(not w.active() for w in self._workers)

    @property
    def has_room(self) -> bool:
        """Could it start another attempt now: a worker idle and nothing waiting for one?"""
        return not self._workers or (self.idle > 0 and not self._backlog)

    def check(self, resources: Resources) -> str | None:
        if resources.cpu > self.size:
            return f"it asks for cpu={resources.cpu} but there are {self.size} worker slots"
        memory = machine_memory()
        if resources.memory > memory:
            asked, has = format_memory(resources.memory), format_memory(memory)
            return f"it asks for memory={asked} but this machine has {has}"
        return None

    def adopt(self, jobs: Sequence[Job]) -> None:
        """Nothing to do: a previous owner's workers died with it, or run on and record their
        own ends; the store tells the driver how they ended."""

    def submit(self, job: Job, launch: Launch, now: float) -> None:
        """Start ``job`` on an idle worker if its cpu fits, else queue it behind a busy worker
        if it is ``queueable`` (one cpu, no timeout), else keep it until one frees up."""
        if self._selector is None:  # the workers start with the first attempt: none for a run
            self.start()  # whose tasks are all skipped
        timeout = launch.timeout
        slot = _Slot(job, 0, launch.resources.cpu, timeout, launch.queueable and not timeout)
        if not self._place(slot, now):
            self._backlog.append(slot)

    def _cpu_in_use(self) -> int:
        """The cpu of the attempts the workers run (or will run before any queued one)."""
        used = 0
        for w in self._workers:
            for s in w.slots:
                if not s.revoked:
                    used += s.cpu
                    break
        return used

    def _place(self, slot: _Slot, now: float) -> bool:
        idle = None
        behind = None
        fewest = QUEUE_DEPTH + 1
        for w in self._workers:
            active = w.active()
            if not active:
                idle = idle or w
            elif len(w.slots) >= Control.MARKS // 2:
                continue  # answers for taken-back attempts still due: enough on this one
            elif (
                len(active) < fewest
                and active[0].timeout is None
                and now - active[0].since < YOUNG
                and not any(s.cancelling for s in active)
            ):
                behind, fewest = w, len(active)
        if idle is not None and self._cpu_in_use() + slot.cpu <= self.size:
            self._send(idle, slot, now, queued=False)
            return True
        if slot.queueable and behind is not None:
            self._send(behind, slot, now, queued=True)
            return True
        return False

    def _send(self, w: _Worker, slot: _Slot, now: float, *, queued: bool) -> None:
        """Assign ``slot`` to ``w``; it goes out with the worker's other new jobs (``_flush``)."""
        # The sequence number is given here, not when the attempt was submitted or taken back:
        # a worker must receive its jobs in increasing order (``Control`` relies on it), and an
        # attempt may wait in the backlog while later ones are sent.
        self._seq += 1
        slot.seq = self._seq
        slot.queued = queued
        slot.deadline = now + slot.timeout if slot.timeout else None
        if not w.active():
            slot.since = now
        w.slots.append(slot)
        w.outbox.append(pack(slot.job, slot.seq, inherited=slot.job.run_id in w.graphs))
        self._unsent = True

    def _flush(self) -> None:
        """Send each worker its new jobs in one message: one write, one wake-up."""
        if not self._unsent:
            return
        self._unsent = False
        for w in self._workers:
            if w.outbox:
                msg = w.outbox[0] if len(w.outbox) == 1 else w.outbox
                w.outbox = []
                try:
                    w.conn.send(msg)
                except OSError:
                    pass  # the worker died: poll() sees it and accounts for its slots

    def _fill(self, now: float) -> None:
        """Take queued attempts back from behind long ones; give what waits to free workers."""
        actives = [w.active() for w in self._workers]
        if not self._backlog and all(len(a) < 2 for a in actives):
            return  # nothing queued anywhere, nothing waiting
        for w, active in zip(self._workers, actives, strict=True):
            if len(active) > 1 and now - active[0].since >= YOUNG:
                for slot in reversed(active[1:]):
                    if w.control.revoke(slot.seq):
                        slot.revoked = True
                        self._backlog.appendleft(self._renew(slot))
        for _ in range(len(self._backlog)):
            slot = self._backlog.popleft()
            if not self._place(slot, now):
                self._backlog.append(slot)
        for w in self._workers:
            if w.active():
                continue
            if self._cpu_in_use() + 1 > self.size:
                return
            victim = max(self._workers, key=lambda o: len(o.active()))
            active = victim.active()
            if len(active) > 1 and active[-1].queued and victim.control.revoke(active[-1].seq):
                active[-1].revoked = True
                self._send(w, self._renew(active[-1]), now, queued=False)

    def _renew(self, slot: _Slot) -> _Slot:
        """The same attempt in a new slot, to be sent again (with a new sequence number)."""
        return _Slot(slot.job, 0, slot.cpu, slot.timeout, slot.queueable)

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        self._flush()
        for slot in list(self._backlog):
            if slot.job.instance == instance and slot.job.attempt == attempt:
                self._backlog.remove(slot)
                self._dead.append(Lost(slot.job, "cancelled before it started"))
        for w in self._workers:
            for slot in w.slots:
                if slot.revoked or slot.job.instance != instance or slot.job.attempt != attempt:
                    continue
                if slot.cancelling:
                    continue
                if not w.control.stop(slot.seq):  # not started: the worker will skip it
                    slot.revoked = True
                    self._dead.append(Lost(slot.job, "cancelled before it started"))
                else:  # running (or just ended): SIGTERM, then SIGKILL after the grace period
                    slot.cancelling = True
                    slot.kill_at = now + grace
                    self._signal(w, signal.SIGTERM)

    def next_deadline(self) -> float | None:
        times = [t for w in self._workers for s in w.slots for t in (s.deadline, s.kill_at) if t is not None]
        return min(times) if times else None

    def poll(self, timeout: float) -> Iterator[Outcome | Lost]:
        """Wait up to ``timeout`` seconds; yield what finished, died or timed out."""
        if self._dead:
            yield from self._drain_dead()
        self._fill(time.time())
        self._flush()
        if not any(w.slots for w in self._workers):
            if timeout > 0:
                time.sleep(min(timeout, 0.05))
            return
        assert self._selector is not None
        events = self._selector.select(timeout)
        while events:
            for key, _ in events:
                w, is_conn = key.data
                if w not in self._workers:
                    continue  # replaced while handling an earlier event
                if is_conn:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        yield from self._died(w)
                        continue
                    out = self._answer(w, msg)
                    if out is not None:
                        yield out
                elif not w.process.is_alive():
                    yield from self._died(w)
            events = self._selector.select(0)  # whatever else arrived meanwhile: one batch
        if self._dead:
            yield from self._drain_dead()
        yield from self._timers(time.time())

    def _answer(self, w: _Worker, msg: Any) -> Outcome | None:
        seq, status, result, error, started, ended, waited_for, outputs = msg
        slot = w.slots.popleft()
        assert slot.seq == seq, f"worker {w.index} answered job {seq}, expected {slot.seq}"
        if slot.revoked:
            return None
        for nxt in w.slots:
            if not nxt.revoked:
                nxt.since = ended or time.time()  # it started when this one ended
                break
        if started:
            took = ended - started
            self._duration = took if self._duration is None else 0.8 * self._duration + 0.2 * took
        if slot.dropped:
            return None
        job = slot.job
        return Outcome(
            job.run_id, job.instance, job.attempt, status, result, error, started, ended, waited_for, outputs
        )

    def _drain(self, w: _Worker) -> Iterator[Outcome]:
        """Answers the worker already sent, before it is judged dead or killed."""
        try:
            while w.slots and w.conn.poll(0):
                out = self._answer(w, w.conn.recv())
                if out is not None:
                    yield out
        except (EOFError, OSError):
            pass

    def _died(self, w: _Worker) -> Iterator[Outcome | Lost]:
        yield from self._drain(w)
        code = w.process.exitcode if not w.process.is_alive() else None
        reason = f"the worker process died (exit code {code})"
        if code is not None and code < 0:
            reason = f"the worker process was killed by signal {-code}"
        yield from self._replace(w, reason)

    def _timers(self, now: float) -> Iterator[Outcome | Lost]:
        if self.next_deadline() is None:
            return
        for w in list(self._workers):
            for slot in w.slots:
                if slot.revoked:
                    continue
                if slot.kill_at is not None and now >= slot.kill_at:
                    reason = "cancelled; killed after the grace period"
                elif slot.deadline is not None and now >= slot.deadline and not slot.cancelling:
                    reason = "timed out"
                else:
                    continue
                yield from self._drain(w)
                if slot in w.slots:  # it did not end in the meantime
                    yield from self._replace(w, reason, slot)
                break

    def _replace(self, w: _Worker, reason: str, culprit: _Slot | None = None) -> Iterator[Lost]:
        """Kill ``w`` and start a fresh worker; account for every attempt it held."""
        self._kill(w)
        w.process.join(timeout=5)
        assert self._selector is not None
        self._selector.unregister(w.conn.reader)
        self._selector.unregister(w.process.sentinel)
        w.conn.close()
        self._workers[self._workers.index(w)] = self._spawn(w.index)
        requeue = []
        for slot in w.slots:
            if slot.revoked:
                continue
            if slot is culprit:
                yield Lost(slot.job, reason, timed_out=reason == "timed out")
            elif slot.queued and not w.control.started(slot.seq):
                requeue.append(slot)  # it never started: send it elsewhere
            elif culprit is None:
                yield Lost(slot.job, reason)
            else:
                yield Lost(slot.job, f"{reason} (the attempt ahead of it on the worker was killed)")
        now = time.time()
        for slot in requeue:
            slot = self._renew(slot)
            if not self._place(slot, now):
                self._backlog.appendleft(slot)

    def _drain_dead(self) -> Iterator[Lost]:
        dead, self._dead = self._dead, []
        yield from dead

    def _signal(self, w: _Worker, sig: int) -> None:
        try:
            os.killpg(w.process.pid, sig)  # the worker and any script it started
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(w.process.pid, sig)
            except ProcessLookupError:
                pass

    def _kill(self, w: _Worker) -> None:
        self._signal(w, signal.SIGKILL)

    @property
    def cancelling(self) -> bool:
        return any(s.cancelling for w in self._workers for s in w.slots)

    def running(self) -> list[Job]:
        """Every attempt the pool holds: running, queued on a worker, or waiting for one."""
        held = [s.job for w in self._workers for s in w.slots if not s.revoked]
        return held + [s.job for s in self._backlog]
