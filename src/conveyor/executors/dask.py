"""The Dask executor: attempts run as Dask tasks, each one Conveyor's runner (``run_remote``).

Without an address it starts a ``LocalCluster`` of single-thread worker processes on 127.0.0.1
(the Dask scheduler then lives in this process and dies with it); with ``address`` it connects
to an existing ``dask scheduler`` whose workers must import ``conveyor`` and the project.

What Dask would otherwise get wrong for us (each measured, see docs/dask.md):

- a worker's death makes Dask re-run its task elsewhere: the local cluster is started with
  ``allowed-failures`` 0, and every future is released as soon as its ``Outcome`` is read;
- ``Future.cancel`` does not stop a running task: a cancel raises ``Cancelled`` in the worker
  thread that runs the attempt, and after the grace period kills that worker process;
- a resource request no worker declares waits forever: ``check`` refuses it at submit;
- when the Dask scheduler dies every future turns ``cancelled``: those are reported ``Unknown``
  (the store tells whether their runners recorded an end), and the adapter reconnects.

The module imports without ``distributed``; the constructor imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from conveyor.errors import ExecutorError
from conveyor.executors import fit, need
from conveyor.executors.port import Launch, Lost, Report, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job, Outcome

log = logging.getLogger(__name__)

#: Environment variables a worker must never hold: the store's credentials stay with Conveyor.
SECRETS = ("CONVEYOR_DB",)
#: The topic the workers' plugin reports attempts starting on (key, worker address).
STARTED = "conveyor-started"
#: The topic the runners' outcomes arrive on (key, the outcome's fields), beside their results.
ENDED = "conveyor-ended"
_PLUGIN = "conveyor"
_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


def key_of(job: Job) -> str:
    """The Dask key of an attempt: it names the attempt on the dashboard and in Dask's logs."""
    return f"conveyor-{job.run_id}-{job.instance}-{job.attempt}"


@dataclass(slots=True)
class _Held:
    job: Job
    key: str
    future: Any = None  # None: adopted (another owner's client made it) or not yet submitted
    timeout: float | None = None
    started: float | None = None  # when a worker began it (its plugin said so)
    worker: str | None = None
    deadline: float | None = None  # the timeout's end, once started
    kill_at: float | None = None  # a cancel's grace ends
    cancelled: bool = False  # we cancelled it (its future's "cancelled" is ours)
    interrupted: bool = False  # Cancelled was raised in the thread running it
    retry_at: float | None = None  # try the interrupt again (its thread was not there yet)
    timed_out: bool = False


@dataclass(slots=True)
class _Connection:
    client: Any
    cluster: Any = None  # the LocalCluster we started, if any
    workers: dict[str, Any] = field(default_factory=dict)


class DaskExecutor:
    """Runs attempts on a Dask cluster (see the module's docstring)."""

    name: ClassVar[str] = "dask"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self._distributed = need("distributed", "dask")
        need("dask", "dask")
        from conveyor.executors import _dask_worker

        self._remote = _dask_worker
        settings = dict(settings or {})
        self.log_dir = log_dir
        self.recorder = recorder
        self.address: str | None = settings.get("address") or None
        self.size = int(settings.get("workers") or workers or 1)
        self.connect_timeout = float(settings.get("connect_timeout", 5.0))
        self.grace = float(settings.get("grace", 5.0))
        self._resources = dict(settings.get("resources") or {})
        self._held: dict[str, _Held] = {}  # by key
        self._adopted: dict[str, _Held] = {}  # by key: attempts another owner launched
        self._done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # ("", None): wake up
        self._outcomes: dict[str, Outcome] = {}  # by key: fetched in Dask's callback thread
        self._out: list[Report] = []
        self._reconnect_at = 0.0
        self._failures = 0
        self._conn: _Connection | None = None
        self._conn = self._connect(first=True)

    # -- connection ---------------------------------------------------------------------------
    def _connect(self, *, first: bool) -> _Connection:
        distributed = self._distributed
        import dask

        if self.address is None:
            conn = self._local_cluster(distributed, dask)
        else:
            self._probe(self.address)
            try:
                client = distributed.Client(self.address, timeout=self.connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise self._unreachable(str(exc)) from None
            conn = _Connection(client)
        try:
            try:
                conn.client.register_plugin(self._remote.Plugin(), name=_PLUGIN)
            except Exception as exc:
                raise ExecutorError(
                    f"the Dask workers at {self.address or 'the LocalCluster'} cannot run Conveyor's"
                    f" plugin ({_line(exc)}); install conveyor on the Dask scheduler and every worker"
                ) from None
            conn.client.subscribe_topic(STARTED, self._started)
            conn.client.subscribe_topic(ENDED, self._ended_event)
            conn.workers = dict(conn.client.scheduler_info(n_workers=-1)["workers"])
            if first and self.address is not None:
                allowed = conn.client.run_on_scheduler(self._remote.allowed_failures)
                if allowed:
                    log.warning(
                        "the Dask scheduler at %s re-runs a task whose worker died (allowed-failures"
                        " = %s): an attempt may run twice; set distributed.scheduler.allowed-failures"
                        " to 0 there (the runner refuses to begin an attempt twice)",
                        self.address,
                        allowed,
                    )
        except BaseException:
            self._close_conn(conn)
            raise
        return conn

    def _local_cluster(self, distributed: Any, dask: Any) -> _Connection:
        import psutil

        resources = self._resources or {"cpu": 1, "memory": psutil.virtual_memory().total // self.size}
        hidden = {name: os.environ.pop(name) for name in SECRETS if name in os.environ}
        try:
            with dask.config.set(
                {
                    "distributed.scheduler.allowed-failures": 0,
                    "distributed.scheduler.worker-saturation": 1.0,
                    "distributed.worker.daemon": False,  # an attempt may start processes of its own
                }
            ):
                cluster = distributed.LocalCluster(
                    n_workers=self.size,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",  # a free port: never a warning that 8787 is taken
                    resources=resources,
                    silence_logs=logging.WARNING,
                )
                client = distributed.Client(cluster, set_as_default=False)
        finally:
            os.environ.update(hidden)
        return _Connection(client, cluster)

    def _probe(self, address: str) -> None:
        """A plain TCP connect first: fails at once when nothing listens there."""
        parsed = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
        try:
            with socket.create_connection(
                (parsed.hostname or "127.0.0.1", parsed.port or 8786), timeout=self.connect_timeout
            ):
                pass
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None

    def _unreachable(self, why: str) -> ExecutorError:
        why = why.splitlines()[0] if why else "no answer"
        return ExecutorError(
            f"cannot reach the Dask scheduler at {self.address} ({why}, within {self.connect_timeout:g} s);"
            " is `dask scheduler` running there? Set [executor.dask] address or CONVEYOR_DASK_ADDRESS"
        )

    def _lose_connection(self) -> None:
        """The Dask scheduler went away: every attempt held is Unknown; reconnect later."""
        conn, self._conn = self._conn, None
        for held in list(self._held.values()):
            if held.future is not None and not held.cancelled:
                self._out.append(Unknown(held.job, _DROPPED))
        self._held.clear()
        for adopted in self._adopted.values():  # no engine to reach them through now
            adopted.kill_at = adopted.retry_at = None
        self._reconnect_at = time.time() + _BACKOFF[0]
        self._failures = 0
        if conn is not None:
            self._close_conn(conn)

    def _reconnect(self) -> None:
        if self._conn is not None or self.address is None or time.time() < self._reconnect_at:
            return
        try:
            self._conn = self._connect(first=False)
        except ExecutorError as exc:
            self._failures += 1
            self._reconnect_at = time.time() + _BACKOFF[min(self._failures, len(_BACKOFF) - 1)]
            log.debug("%s", exc)
            return
        self._failures = 0
        log.info("reconnected to the Dask scheduler at %s", self.address)

    def _close_conn(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            conn.client.close(timeout=2)
        if conn.cluster is not None:
            with contextlib.suppress(Exception):
                conn.cluster.close(timeout=10)

    def _alive(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        if conn.client.status not in ("running", "newly-created"):
            self._lose_connection()
            return False
        return True

    # -- the port -----------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        """Attempts the cluster runs at once: its workers' threads (one attempt each)."""
        workers = self._conn.workers if self._conn is not None else {}
        return sum(int(w.get("nthreads", 1)) for w in workers.values()) or self.size

    @property
    def prefetch(self) -> int:
        """Four times as many as the cluster runs wait in Dask's queue, so a worker that finishes one
        starts the next without waiting for Conveyor's turn (they are RUNNING in the store;
        if the Dask scheduler dies before they begin, they are lost through no fault of theirs)."""
        return 32 * self.slots

    @property
    def quick(self) -> bool:
        return True

    @property
    def has_room(self) -> bool:
        return self._conn is not None and self._conn.client.status == "running"

    def check(self, resources: Resources) -> str | None:
        if self._conn is None:
            return None  # cannot tell while the Dask scheduler is away
        return fit.refusal(resources, [_offer(w) for w in self._workers().values()], "Dask worker")

    def _workers(self) -> dict[str, Any]:
        assert self._conn is not None
        with contextlib.suppress(Exception):
            self._conn.workers = dict(self._conn.client.scheduler_info(n_workers=-1)["workers"])
        return self._conn.workers

    def submit(self, job: Job, launch: Launch, now: float) -> None:
        key = key_of(job)
        held = _Held(job, key, timeout=launch.timeout)
        if not self._alive():
            where = self.address or "its LocalCluster"
            self._out.append(Unknown(job, f"the Dask scheduler at {where} is unreachable"))
            return
        assert self._conn is not None
        client = self._conn.client
        report = launch.ticket if launch.ticket is not None else self._report()
        mapped = _mapped(launch.resources, self._conn.workers or self._workers())
        held.future = client.submit(
            self._remote.run, job, report, key=key, pure=False, retries=0, resources=mapped or None
        )
        self._held[key] = held
        held.future.add_done_callback(lambda fut, key=key: self._arrived(key, fut))

    def _arrived(self, key: str, fut: Any) -> None:
        """In Dask's callback thread: wake ``poll``, which fetches the outcomes of every attempt
        that finished meanwhile in one request (``_fetch``)."""
        self._done.put((key, fut))

    def _fetch(self, items: list[tuple[str, Any]]) -> None:
        """The outcomes of the finished attempts among ``items``, gathered at once: one round
        trip to the cluster, not one per attempt."""
        finished = [(k, f) for k, f in items if k and f is not None and f.status == "finished"]
        if len(finished) < 2 or self._conn is None:
            return  # one: ``fut.result()`` costs the same
        with contextlib.suppress(Exception):
            outcomes = self._conn.client.gather([f for _, f in finished], errors="skip")
            if len(outcomes) == len(finished):
                self._outcomes.update((k, out) for (k, _), out in zip(finished, outcomes, strict=True))

    def _report(self) -> str:
        url = getattr(self.recorder, "url", None)
        if not url:
            raise ExecutorError(
                "the dask executor needs a store its runners can write to (a scheduler's recorder)"
            )
        return str(url)

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        for held in [*self._held.values(), *self._adopted.values()]:
            if held.job.instance != instance or held.job.attempt != attempt or held.cancelled:
                continue
            self._stop(held, now, grace)

    def _stop(self, held: _Held, now: float, grace: float, *, timed_out: bool = False) -> None:
        """Interrupt it where it runs; not started: take it back. Kill after ``grace``."""
        if self._conn is None:
            return
        if held.future is not None and held.future.done():
            return  # it ended already (or the scheduler dropped it): poll reports how
        client = self._conn.client
        running = self._interrupt(held, now)
        held.cancelled = True
        held.timed_out = timed_out
        if held.future is not None and not running and held.started is None:
            client.cancel(held.future, force=True)
            self._forget(held)
            self._out.append(Lost(held.job, "cancelled before it started", blameless=True))
            return
        held.kill_at = now + grace

    def _interrupt(self, held: _Held, now: float) -> bool:
        """Raise ``Cancelled`` where it runs; is it running (or starting) somewhere?"""
        assert self._conn is not None
        workers = [held.worker] if held.worker else None  # not known (adopted): ask every worker
        try:
            hits = self._conn.client.run(self._remote.interrupt, held.key, workers=workers, on_error="return")
        except Exception:
            hits = {}
        running = [addr for addr, hit in hits.items() if hit in ("interrupted", "executing")]
        if running:
            held.worker = running[0]
        held.interrupted = any(hit == "interrupted" for hit in hits.values())
        held.retry_at = None if held.interrupted else now + 0.2
        return bool(running)

    def adopt(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            key = key_of(job)
            if key not in self._held:
                self._adopted[key] = _Held(job, key)

    def poll(self, timeout: float) -> Iterator[Report]:
        end = time.time() + timeout
        self._reconnect()
        if self._conn is not None:
            self._alive()
        while True:
            yield from self._drain_out()
            wait = end - time.time()
            timer = self.next_deadline()
            if timer is not None:
                wait = min(wait, timer - time.time())
            try:
                first = self._done.get(timeout=max(wait, 0.0)) if wait > 0 else self._done.get_nowait()
            except queue.Empty:
                first = None
            items = [first] if first is not None else []
            while True:
                try:
                    items.append(self._done.get_nowait())
                except queue.Empty:
                    break
            ended = False
            self._fetch(items)
            for key, fut in items:
                report = self._ended(key, fut) if key else None
                if report is not None:
                    ended = True
                    yield report
            yield from self._timers(time.time())
            yield from self._drain_out()
            if ended or time.time() >= end:
                return

    def _drain_out(self) -> Iterator[Report]:
        out, self._out = self._out, []
        yield from out

    def _ended(self, key: str, fut: Any) -> Report | None:
        held = self._held.get(key)
        if held is None or held.future is not fut:
            return None  # let go of, or reported already
        status = "finished" if key in self._outcomes else fut.status
        if status == "finished":
            try:
                out: Outcome = self._outcomes.pop(key) if key in self._outcomes else fut.result()
            except Exception as exc:  # the result could not reach us: the runner recorded it
                self._forget(held)
                return Unknown(held.job, f"Dask lost its result ({_line(exc)}); the store has its end")
            self._forget(held)
            if held.kill_at is not None and held.timed_out and out.status == "cancelled":
                return Lost(held.job, "timed out", timed_out=True)
            return out
        if status == "error":
            error = fut.exception()
            self._forget(held)
            if type(error).__name__ == "KilledWorker":
                where = _killed_on(error)
                if held.kill_at is not None:
                    return self._killed(held)
                if held.started is None:
                    return Lost(held.job, f"the Dask worker holding it died before it started: {where}",
                                blameless=True)  # fmt: skip
                return Lost(held.job, f"the Dask worker running it died: {where}")
            if held.kill_at is not None and type(error).__name__ == "Cancelled":
                # our interrupt landed outside the task (the runner was beginning or recording)
                return (
                    Lost(held.job, "timed out", timed_out=True)
                    if held.timed_out
                    else Lost(held.job, "cancelled while its runner was not running the task", blameless=True)
                )
            hint = ""
            if isinstance(error, ImportError) or "serializ" in str(error):
                hint = " (conveyor and the project must be importable on the Dask scheduler and every worker)"
            return Lost(held.job, f"Dask could not run it: {_line(error)}{hint}", blameless=True)
        if status == "lost":  # the worker holding the result died before we read it
            self._forget(held)
            return Unknown(held.job, "Dask lost its result (its worker died); the store has its end")
        if status == "cancelled":
            if held.cancelled:
                return None  # ours: reported when we cancelled or killed it
            self._lose_connection()  # a future we did not cancel: the scheduler dropped them all
        return None

    def _killed(self, held: _Held) -> Lost:
        if held.timed_out:
            return Lost(held.job, "timed out", timed_out=True)
        return Lost(held.job, "cancelled; killed after the grace period")

    def _forget(self, held: _Held) -> None:
        self._held.pop(held.key, None)
        if held.future is not None:
            with contextlib.suppress(Exception):
                held.future.release()

    def _ended_event(self, event: Any) -> None:
        """From a runner (on the client's loop): its attempt's outcome, usually before Dask says
        the task finished; ``poll`` reports it at once."""
        with contextlib.suppress(Exception):
            _, (key, fields) = event
            held = self._held.get(key)
            if held is not None:
                self._outcomes[key] = Outcome(*fields)
                self._done.put((key, held.future))

    def _started(self, event: Any) -> None:
        """From the workers' plugin (on the client's loop): an attempt began on a worker."""
        _, (key, worker, _when) = event
        held = self._held.get(key) or self._adopted.get(key)
        if held is not None and held.started is None:
            when = time.time()  # this machine's clock, not the worker's
            held.started, held.worker = when, worker
            if held.timeout:
                held.deadline = when + held.timeout
                self._done.put(("", None))  # wake poll: a timer to wait for now

    def _timers(self, now: float) -> Iterator[Report]:
        for held in list(self._held.values()):
            if held.kill_at is not None and now >= held.kill_at:
                self._kill(held)
                self._forget(held)
                yield self._killed(held)
            elif held.deadline is not None and now >= held.deadline and not held.cancelled:
                held.deadline = None
                self._stop(held, now, self.grace, timed_out=True)
            elif held.retry_at is not None and now >= held.retry_at and self._conn is not None:
                self._interrupt(held, now)
        for held in list(self._adopted.values()):
            if held.kill_at is not None and now >= held.kill_at:
                self._kill(held)
                self._adopted.pop(held.key, None)  # its end comes from the store
            elif held.retry_at is not None and now >= held.retry_at and self._conn is not None:
                self._interrupt(held, now)

    def _kill(self, held: _Held) -> None:
        """The grace period is over: drop the key, then kill the worker process running it (its
        nanny starts a new one)."""
        if self._conn is None:
            return
        client = self._conn.client
        if held.future is not None:
            with contextlib.suppress(Exception):
                client.cancel(held.future, force=True)
        try:
            hits = client.run(self._remote.executing, held.key, on_error="return")
        except Exception:
            return
        doomed = [addr for addr, hit in hits.items() if hit is True]
        if doomed:
            with contextlib.suppress(Exception):
                client.run(self._remote.die, workers=doomed, wait=False)

    def next_deadline(self) -> float | None:
        times = [
            t
            for h in [*self._held.values(), *self._adopted.values()]
            for t in (h.deadline, h.kill_at, h.retry_at)
            if t
        ]
        if self._conn is None and self.address is not None:
            times.append(self._reconnect_at)
        return min(times) if times else None

    def running(self) -> list[Job]:
        return [h.job for h in self._held.values()]

    def drop(self, match: Callable[[Job], bool]) -> None:
        for held in list(self._held.values()):
            if match(held.job):
                self._let_go(held)
        for key, held in list(self._adopted.items()):
            if match(held.job):
                del self._adopted[key]
        self._out = [r for r in self._out if not match(r.job if not isinstance(r, Outcome) else _job(r))]

    def _let_go(self, held: _Held) -> None:
        """It runs on (queued ones too) and its runner records its end; we no longer watch it."""
        self._held.pop(held.key, None)
        if held.future is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                self._distributed.fire_and_forget(held.future)
                held.future.release()

    def detach(self) -> None:
        for held in list(self._held.values()):
            self._let_go(held)
        self._adopted.clear()
        self._out.clear()
        self._close(kill=False, linger=True)

    def close(self, *, kill: bool = False) -> None:
        if kill and self._conn is not None:
            now = time.time()
            for held in list(self._held.values()):
                if not held.cancelled:
                    self._stop(held, now, 0.0)
            running = [h.future for h in self._held.values() if h.future is not None]
            end = time.time() + min(self.grace, 2.0)  # a moment for the runners to record "cancelled"
            while time.time() < end and not all(f.done() for f in running):
                time.sleep(0.05)
            for held in list(self._held.values()):
                if held.future is None or not held.future.done():
                    self._kill(held)
                self._forget(held)
        self._close(kill=kill)

    def _close(self, *, kill: bool, linger: bool = False) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        self._reconnect_at = float("inf")  # closed: no reconnecting
        if conn is None:
            return
        if linger and conn.cluster is not None:
            # our LocalCluster runs the attempts let go of: close it once they are done
            threading.Thread(target=_close_when_idle, args=(self, conn), daemon=True).start()
        else:
            self._close_conn(conn)

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster({self.size})"
        return f"<DaskExecutor {where} holding {len(self._held)}>"


def _close_when_idle(executor: DaskExecutor, conn: _Connection, patience: float = 24 * 3600.0) -> None:
    end = time.time() + patience
    with contextlib.suppress(Exception):
        while conn.cluster.scheduler.tasks and time.time() < end:
            time.sleep(1.0)
    executor._close_conn(conn)


_DROPPED = "the Dask scheduler dropped it (its scheduler went away?); the store tells whether it ended"


# -- resources ----------------------------------------------------------------------------------
def _offer(worker: Mapping[str, Any]) -> dict[str, float]:
    offer = {k: float(v) for k, v in (worker.get("resources") or {}).items()}
    offer.setdefault("cpu", float(worker.get("nthreads") or 1))
    if worker.get("memory_limit"):
        offer.setdefault("memory", float(worker["memory_limit"]))
    return offer


def _mapped(resources: Resources, workers: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Dask resources only exist where workers declare them: a name no worker declares would
    wait forever, so only declared names are asked for (``check`` refused the rest)."""
    declared = {name for w in workers.values() for name in (w.get("resources") or {})}
    mapped = {name: n for name, n in fit.wanted(resources).items() if name in declared}
    if mapped == {"cpu": 1} and all(int(w.get("nthreads", 1)) == 1 for w in workers.values()):
        return {}  # a worker of one thread runs one at a time anyway; Dask schedules faster without
    return mapped


# -- errors -------------------------------------------------------------------------------------
def _line(exc: BaseException | None) -> str:
    """``Type: the first sentence``: Dask's messages run on over several lines."""
    text = str(exc).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else ""
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def _killed_on(exc: BaseException) -> str:
    last = getattr(exc, "last_worker", None)
    address = getattr(last, "address", None)
    if address:
        return str(address)
    m = re.search(r"(tcp|tls|inproc)://[\w.\-:/]+", str(exc))
    return m.group(0).rstrip(".") if m else _line(exc)


def _job(outcome: Outcome) -> Job:
    return Job(outcome.run_id, outcome.instance, outcome.attempt, "", "", {}, "", {})
