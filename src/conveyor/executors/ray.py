"""The Ray executor: attempts run on a pool of detached, named Ray actors.

Why actors, not tasks: a Ray task dies with the driver that submitted it (Ray SIGTERMs it), so
a Conveyor process that dies would take its attempts with it. A *detached* actor outlives its
creator; the runner inside it (``run_remote``) records the attempt's end in the store itself, so
the end lands even when the Conveyor process is gone, and a new owner finds the same actors by
name (``{pool}-{shape}-{i}`` in the ``conveyor`` namespace).

- One pool per resource shape (cpu, gpu, memory, custom), actors created on demand, at most as
  many as the cluster's nodes can hold, each running one attempt at a time (``max_concurrency=1``;
  the runner redirects its process's stdout and working directory). Ray never retries or restarts
  (``max_restarts=0``, ``max_task_retries=0``): a lost attempt is the scheduler's to retry.
- Cancel: ``ray.cancel`` does not interrupt a running method of a synchronous actor (measured:
  Ray waits for it to end and then reports it cancelled), so each actor has a second thread (the
  ``control`` concurrency group) that raises ``KeyboardInterrupt`` in the runner's thread; the
  runner records the attempt cancelled. After the grace period the actor is killed and replaced.
  Timeouts kill the actor at once (as the local pool kills its worker).
- An actor idle for ``idle`` seconds is killed by its owner; one that no owner uses exits by
  itself after ``orphan`` seconds, so a dead owner's actors do not hold the cluster's cpu forever.
- ``close()`` kills the idle actors it holds and, if this process started the local Ray, stops
  it; actors still running attempts run on (unless ``kill``) and record their own ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from conveyor.errors import ExecutorError
from conveyor.executors import need
from conveyor.executors.batch import pool_name
from conveyor.executors.port import Launch, Lost, Report, Ticket
from conveyor.executors.remote import run_remote
from conveyor.resources import Resources, format_memory
from conveyor.runner import Job, Outcome

log = logging.getLogger("conveyor.executors.ray")

#: Environment variables a worker of a local Ray must not inherit from this process: the store's
#: credentials, and any Conveyor token, password or secret.
_SECRET = re.compile(r"^CONVEYOR_(DB|.*(TOKEN|PASSWORD|SECRET|KEY).*)$")


#: What an actor answers for an attempt cancelled before it began there.
NOT_STARTED = "cancelled before it started"


class _Runner:
    """The actor's class (made remote lazily: this module imports without ``ray``). Picklable by
    reference, so every node imports it from the ``conveyor`` installed there."""

    def __init__(self, orphan: float) -> None:
        self._lock = threading.Lock()
        self._current: tuple[str, str, int] | None = None
        self._thread: int | None = None
        self._cancelled: set[tuple[str, str, int]] = set()  # interrupted before they began here
        self._idle_since = time.time()
        if orphan > 0:
            threading.Thread(target=self._reap, args=(orphan,), daemon=True).start()

    def run(self, job: Job, report: Ticket | str) -> Outcome | str:
        key = (job.run_id, job.instance, job.attempt)
        with self._lock:
            if key in self._cancelled:
                self._cancelled.discard(key)
                return NOT_STARTED
            self._current = key
            self._thread = threading.get_ident()
        try:
            return run_remote(job, report)
        finally:
            with self._lock:
                self._current = self._thread = None
                self._idle_since = time.time()

    # the ``control`` group: answered while ``run`` runs
    def current(self) -> tuple[tuple[str, str, int] | None, int]:
        """The attempt it runs (None: idle) and the actor's process id."""
        return self._current, os.getpid()

    def interrupt(self, run_id: str, instance: str, attempt: int) -> bool:
        """Raise ``KeyboardInterrupt`` in the runner's thread if it runs that attempt (it lands
        at the next Python instruction: a long blocking call ends first)."""
        with self._lock:
            if self._current != (run_id, instance, attempt) or self._thread is None:
                if len(self._cancelled) < 1000:
                    self._cancelled.add((run_id, instance, attempt))  # it may not have begun yet
                return False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread), ctypes.py_object(KeyboardInterrupt)
            )
            return True

    def _reap(self, orphan: float) -> None:
        while True:
            time.sleep(min(orphan, 30.0))
            with self._lock:
                if self._current is None and time.time() - self._idle_since > orphan:
                    os._exit(0)  # no owner used it for so long: give its resources back


@dataclass(slots=True, eq=False)
class _Actor:
    name: str
    shape: str
    handle: Any
    call: _Call | None = None
    idle_since: float = 0.0


@dataclass(slots=True, eq=False)
class _Call:
    job: Job
    launch: Launch
    shape: str
    report: Ticket | str
    actor: _Actor | None = None
    deadline: float | None = None
    kill_at: float | None = None
    cancelling: bool = False


def shape_of(resources: Resources) -> str:
    """A resource request's pool name: ``c1``, ``c2-g1-m2147483648-xfoo1``."""
    parts = [f"c{resources.cpu}"]
    if resources.gpu:
        parts.append(f"g{resources.gpu}")
    if resources.memory:
        parts.append(f"m{resources.memory}")
    parts += [f"x{k}{v}" for k, v in sorted(resources.custom.items()) if v]
    return "-".join(parts)


def ray_request(resources: Resources) -> dict[str, float]:
    """The request in Ray's names: ``CPU``, ``GPU``, ``memory`` (bytes), custom ones as named."""
    req = {"CPU": float(resources.cpu), "GPU": float(resources.gpu), "memory": float(resources.memory)}
    req.update({k: float(v) for k, v in resources.custom.items()})
    return {k: v for k, v in req.items() if v}


_ORDER = {"CPU": 0, "GPU": 1, "memory": 2}


def _describe(res: Mapping[str, float]) -> str:
    """``cpu 2, gpu 1, memory 1GiB, foo 1``: what a node has, or a request asks for."""
    shown = []
    for k, v in sorted(res.items(), key=lambda kv: (_ORDER.get(kv[0], 3), kv[0])):
        if k.startswith(("node:", "accelerator_type")) or k == "object_store_memory":
            continue
        if k == "memory":
            shown.append(f"memory {format_memory(int(v))}")
        else:
            shown.append(f"{k.lower() if k in _ORDER else k} {v:g}")
    return ", ".join(shown) or "nothing"


def _line(exc: BaseException) -> str:
    """An engine error in one line: its type and the first line of its text."""
    text = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class RayExecutor:
    """Attempts as calls to ``run_remote`` on detached named Ray actors (see the module doc)."""

    name: ClassVar[str] = "ray"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        s = dict(settings or {})
        # Ray reads its auth mode once, when it is first imported: set it before
        if s.get("auth_mode"):
            os.environ["RAY_AUTH_MODE"] = str(s["auth_mode"])
        if s.get("auth_token"):
            os.environ["RAY_AUTH_TOKEN"] = str(s["auth_token"])
        self._ray = need("ray", "ray")
        self.size = max(1, int(s.get("num_cpus", workers)))
        self.log_dir = log_dir
        self.recorder = recorder
        self.address: str | None = s.get("address") or None
        self.namespace = str(s.get("namespace") or "conveyor")
        self.connect_timeout = float(s.get("connect_timeout", 5.0))
        self.idle = float(s.get("idle", 60.0))
        self.orphan = float(s.get("orphan", 600.0))
        self.runtime_env: dict[str, Any] | None = s.get("runtime_env")
        self.pool = str(s.get("pool") or pool_name(recorder, log_dir))
        self._connected = False
        self._owns_ray = False  # this process started the (local) Ray: close() stops it
        self._joined = False  # this executor joined a cluster at ``address``: detach() leaves it
        self._actor_class: Any = None
        self._actors: dict[str, list[_Actor]] = {}
        self._calls: dict[tuple[str, int], _Call] = {}
        self._backlog: deque[_Call] = deque()
        self._lost: list[Lost] = []
        self._done: queue.SimpleQueue[tuple[_Call, Any]] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[_Call] = queue.SimpleQueue()  # new actors up: timeouts start
        self._nodes: list[dict[str, float]] = []
        self._foreign: set[str] = set()  # pool actors busy with attempts this executor does not hold
        self._killed: dict[str, float] = {}  # names of actors it killed, and when: Ray frees a name
        # only once the actor is gone, and get_if_exists would hand back the dying actor
        self._adopted: dict[tuple[str, int], tuple[Any, tuple[str, str, int]]] = {}  # its actor
        self._kills: list[tuple[float, Any]] = []  # adopted attempts' actors to kill after a grace

    # -- port properties ------------------------------------------------------------------------
    @property
    def prefetch(self) -> int:
        """Attempts handed over beyond the free slots wait in this executor's backlog and go to
        the next actor that frees up, without waiting for the driver's turn."""
        return 4 * self.slots

    @property
    def slots(self) -> int:
        """Attempts of the default shape (one cpu) the cluster's nodes hold at once."""
        return self._cap(Resources()) if self._nodes else self.size

    @property
    def quick(self) -> bool:
        return True

    @property
    def has_room(self) -> bool:
        if not self._connected:
            return True
        cpu = sum(n.get("CPU", 0.0) for n in self._nodes)
        return not self._backlog and sum(c.launch.resources.cpu for c in self._calls.values()) < cpu

    # -- connection -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the Ray cluster at ``address``, or start a local one (in this process)."""
        if self._connected:
            return
        ray = self._ray
        common: dict[str, Any] = {
            "namespace": self.namespace,
            "log_to_driver": False,
            "logging_level": logging.ERROR,  # not its warnings (a SIGTERM handler from a thread)
        }
        if self.runtime_env:
            common["runtime_env"] = self.runtime_env
        if ray.is_initialized():
            pass  # this process is a Ray driver already (a notebook, a test): use that cluster
        elif self.address:
            self._join(common)
            self._joined = True
        else:
            with _scrubbed():  # the local Ray's workers inherit this process's environment
                try:
                    ray.init(
                        address="local",  # a new Ray, never one found running on this machine
                        num_cpus=self.size,
                        include_dashboard=False,
                        object_store_memory=100 * 2**20,
                        **common,
                    )
                except Exception as exc:
                    raise ExecutorError(f"cannot start a local Ray: {_line(exc)}") from None
            self._owns_ray = True
        self._connected = True
        self._actor_class = ray.remote(concurrency_groups={"control": 1})(_Runner)
        self._nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]

    def _join(self, common: dict[str, Any]) -> None:
        address = str(self.address)
        if address.startswith("ray://"):
            raise ExecutorError(
                f"the ray executor needs the cluster's GCS address (host:6379), not a Ray Client "
                f"address ({address}): Ray Client does not keep detached actors' calls"
            )
        if address != "auto":
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), self.connect_timeout).close()
            except (OSError, ValueError) as exc:
                raise ExecutorError(
                    f"cannot reach the Ray cluster at {address}: {exc} (waited {self.connect_timeout:g}s); "
                    "is `ray start --head` running there, and is the address host:port of its GCS?"
                ) from None
        failed: list[BaseException] = []

        def init() -> None:
            try:
                self._ray.init(address=address, **common)
            except BaseException as exc:
                failed.append(exc)

        # ray.init loops for minutes on an auth-token mismatch instead of failing: bound it
        thread = threading.Thread(target=init, name="conveyor-ray-connect", daemon=True)
        thread.start()
        thread.join(self.connect_timeout * 3)
        if thread.is_alive():
            raise ExecutorError(
                f"the Ray cluster at {address} answers but did not let this process in within "
                f"{self.connect_timeout * 3:g}s; check RAY_AUTH_MODE and the token "
                "(the same for the cluster and Conveyor)"
            )
        if failed:
            raise ExecutorError(f"cannot join the Ray cluster at {address}: {_line(failed[0])}") from None

    # -- resources ------------------------------------------------------------------------------
    def check(self, resources: Resources) -> str | None:
        self.connect()
        self._nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]  # nodes come and go
        req = ray_request(resources)
        if not self._nodes:
            return "the Ray cluster has no live node"
        for node in self._nodes:
            if all(node.get(k, 0.0) >= v for k, v in req.items()):
                return None
        biggest = max(self._nodes, key=lambda n: (n.get("CPU", 0.0), n.get("GPU", 0.0), n.get("memory", 0.0)))
        return (
            f"no Ray node can run it: it asks for {_describe(req)}; the biggest node has {_describe(biggest)}"
        )

    def _cap(self, resources: Resources) -> int:
        """How many actors of this shape the cluster's nodes can hold at once."""
        req = ray_request(resources)
        return max(1, sum(int(min(n.get(k, 0.0) / v for k, v in req.items())) for n in self._nodes))

    # -- work -----------------------------------------------------------------------------------
    def submit(self, job: Job, launch: Launch, now: float) -> None:
        self.connect()
        report: Ticket | str | None = launch.ticket or getattr(self.recorder, "url", None)
        if report is None:
            raise ExecutorError("the ray executor needs a recorder or a ticket: its runners record attempts")
        call = _Call(job, launch, shape_of(launch.resources), report)
        self._calls[job.instance, job.attempt] = call
        if not self._start(call, now):
            self._backlog.append(call)

    def _start(self, call: _Call, now: float) -> bool:
        actors = self._actors.setdefault(call.shape, [])
        actor = next((a for a in actors if a.call is None), None)
        fresh = actor is None
        if actor is None:
            if len(actors) >= self._cap(call.launch.resources):
                return False
            self._free_other_shapes(call.shape)
            actor = self._new_actor(call.shape, call.launch.resources)
            actors.append(actor)
        actor.call, call.actor = call, actor
        call.deadline = now + call.launch.timeout if call.launch.timeout and not fresh else None
        if call.launch.timeout and fresh:  # a task's timeout does not count the actor's start
            ready = _control(actor.handle.current).remote()
            ready.future().add_done_callback(lambda _fut, c=call: self._ready.put(c))
        ref = actor.handle.run.remote(call.job, call.report)
        done = self._done
        ref.future().add_done_callback(lambda fut, c=call: done.put((c, fut)))
        return True

    def _new_actor(self, shape: str, resources: Resources) -> _Actor:
        now = time.time()
        self._killed = {n: t for n, t in self._killed.items() if now - t < 60.0}
        taken = {a.name for a in self._actors.get(shape, [])} | self._foreign | set(self._killed)
        i = 0
        while f"{self.pool}-{shape}-{i}" in taken:
            i += 1
        name = f"{self.pool}-{shape}-{i}"
        handle = self._actor_class.options(
            name=name,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=0,
            max_task_retries=0,
            max_concurrency=1,
            num_cpus=resources.cpu,
            num_gpus=resources.gpu or None,
            memory=resources.memory or None,
            resources={k: v for k, v in resources.custom.items() if v} or None,
        ).remote(self.orphan)
        return _Actor(name, shape, handle, idle_since=time.time())

    def _free_other_shapes(self, shape: str) -> None:
        """An actor holds its resources while it lives: before making one, kill the idle actors
        of other shapes, which could hold what the new one needs."""
        for other, actors in self._actors.items():
            if other != shape:
                for a in [a for a in actors if a.call is None]:
                    self._retire(a)

    def _retire(self, actor: _Actor, *, kill: bool = True) -> None:
        actors = self._actors.get(actor.shape, [])
        if actor in actors:
            actors.remove(actor)
        if kill:
            self._killed[actor.name] = time.time()
            with contextlib.suppress(Exception):
                self._ray.kill(actor.handle, no_restart=True)

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        call = self._calls.get((instance, attempt))
        if call is None:
            adopted = self._adopted.pop((instance, attempt), None)
            if adopted is not None:  # an attempt a previous owner launched: interrupt, then kill
                handle, key = adopted
                self._kills.append((now + grace, handle))
                with contextlib.suppress(Exception):
                    _control(handle.interrupt).remote(*key)
            return
        if call in self._backlog:
            self._backlog.remove(call)
            del self._calls[instance, attempt]
            self._lost.append(Lost(call.job, NOT_STARTED, blameless=True))
            return
        if call.cancelling or call.actor is None:
            return
        call.cancelling = True
        call.kill_at = now + grace
        job = call.job
        _control(call.actor.handle.interrupt).remote(job.run_id, job.instance, job.attempt)

    def next_deadline(self) -> float | None:
        times = [t for c in self._calls.values() for t in (c.deadline, c.kill_at) if t is not None]
        times += [t for t, _ in self._kills]
        return min(times) if times else None

    def poll(self, timeout: float) -> Iterator[Report]:
        end = time.time() + timeout
        while True:
            reports: list[Report] = list(self._lost)
            self._lost = []
            while True:
                try:
                    call, fut = self._done.get_nowait()
                except queue.Empty:
                    break
                out = self._finish(call, fut)
                if out is not None:
                    reports.append(out)
            now = time.time()
            while True:
                try:
                    started = self._ready.get_nowait()
                except queue.Empty:
                    break
                if started.deadline is None and started.launch.timeout:
                    started.deadline = now + started.launch.timeout
            reports += self._timers(now)
            self._dispatch(now)
            self._reap(now)
            if reports:
                yield from reports
                return
            wait = end - now
            deadline = self.next_deadline()
            if deadline is not None:
                wait = min(wait, deadline - now)
            if wait <= 0:
                if now >= end:
                    return
                continue
            try:
                item = self._done.get(timeout=wait)
            except queue.Empty:
                continue
            self._done.put(item)  # handled at the top, with whatever else arrived

    def _finish(self, call: _Call, fut: Any) -> Report | None:
        key = call.job.instance, call.job.attempt
        if self._calls.get(key) is not call:
            return None  # dropped, or already reported (killed for a timeout or a cancel)
        del self._calls[key]
        actor = call.actor
        assert actor is not None
        actor.call, actor.idle_since = None, time.time()
        exc = fut.exception()
        if exc is None:
            out = fut.result()
            if out == NOT_STARTED:
                return Lost(call.job, NOT_STARTED, blameless=True)
            return out if isinstance(out, Outcome) else Lost(call.job, f"the runner returned {out!r}")
        errors = self._ray.exceptions
        if isinstance(exc, errors.RayActorError | errors.WorkerCrashedError | errors.NodeDiedError):
            self._retire(actor)
            return Lost(call.job, f"the Ray actor running it died: {_line(exc)}")
        if call.cancelling:  # the interrupt landed outside the runner's own handling
            return Lost(call.job, "cancelled")
        # the runner could not even start (unpicklable job, conveyor not importable, ...): not the
        # task's fault; the actor may be broken, so it goes
        self._retire(actor)
        return Lost(call.job, f"the Ray actor could not run it: {_line(exc)}", blameless=True)

    def _timers(self, now: float) -> list[Lost]:
        out = []
        for call in list(self._calls.values()):
            if call.kill_at is not None and now >= call.kill_at:
                out.append(self._kill(call, Lost(call.job, "cancelled; killed after the grace period")))
            elif call.deadline is not None and now >= call.deadline and not call.cancelling:
                out.append(self._kill(call, Lost(call.job, "timed out", timed_out=True)))
        for when, handle in [k for k in self._kills if k[0] <= now]:
            self._kills.remove((when, handle))
            with contextlib.suppress(Exception):
                self._ray.kill(handle, no_restart=True)
        return out

    def _kill(self, call: _Call, lost: Lost) -> Lost:
        del self._calls[call.job.instance, call.job.attempt]
        if call.actor is not None:
            self._retire(call.actor)  # the next attempt of this shape gets a new actor
        return lost

    def _dispatch(self, now: float) -> None:
        for _ in range(len(self._backlog)):
            call = self._backlog.popleft()
            if not self._start(call, now):
                self._backlog.append(call)

    def _reap(self, now: float) -> None:
        for actors in self._actors.values():
            for a in [a for a in actors if a.call is None and now - a.idle_since > self.idle]:
                self._retire(a)

    def running(self) -> list[Job]:
        return [c.job for c in self._calls.values()]

    # -- owners ---------------------------------------------------------------------------------
    def adopt(self, jobs: Sequence[Job]) -> None:
        """Find which of the pool's actors run ``jobs`` (each actor says what it runs), so that
        ``cancel`` reaches them; those actors are not given new attempts while they run."""
        self.connect()
        ray = self._ray
        wanted = {(j.run_id, j.instance, j.attempt) for j in jobs}
        names = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == self.namespace and a["name"].startswith(f"{self.pool}-")
        ]
        handles = {}
        for name in names:
            with contextlib.suppress(Exception):
                handles[name] = ray.get_actor(name, namespace=self.namespace)
        refs = {_control(h.current).remote(): name for name, h in handles.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.connect_timeout)
        for ref in ready:
            with contextlib.suppress(Exception):
                current, _pid = ray.get(ref)
                if current is None:
                    continue
                name = refs[ref]
                self._foreign.add(name)
                if tuple(current) in wanted:
                    self._adopted[current[1], current[2]] = (handles[name], tuple(current))

    def drop(self, match: Callable[[Job], bool]) -> None:
        for key, call in list(self._calls.items()):
            if not match(call.job):
                continue
            del self._calls[key]
            if call in self._backlog:
                self._backlog.remove(call)
            elif call.actor is not None:  # it runs on, records its own end; its actor is not ours
                self._retire(call.actor, kill=False)
                self._foreign.add(call.actor.name)
        self._lost = [x for x in self._lost if not match(x.job)]

    def detach(self) -> None:
        self.drop(lambda job: True)
        self._kill_idle()
        if self._connected and self._joined:
            with contextlib.suppress(Exception):
                self._ray.shutdown()  # disconnects; the detached actors run on
            self._connected = False

    def close(self, *, kill: bool = False) -> None:
        if kill:
            for call in list(self._calls.values()):
                if call.actor is not None:
                    self._retire(call.actor)
            self._calls.clear()
        self._backlog.clear()
        self._kill_idle()
        if self._connected and self._owns_ray:
            with contextlib.suppress(Exception):
                self._ray.shutdown()  # a local Ray started here: its actors stop with it
        self._connected = False

    def _kill_idle(self) -> None:
        if not self._connected:
            return
        for actors in self._actors.values():
            for a in [a for a in actors if a.call is None]:
                self._retire(a)

    # -- tests and tools --------------------------------------------------------------------------
    def actor_pid(self, instance: str, attempt: int) -> int | None:
        """The process id of the actor running an attempt this executor holds."""
        call = self._calls.get((instance, attempt))
        if call is None or call.actor is None:
            return None
        return int(self._ray.get(_control(call.actor.handle.current).remote(), timeout=30)[1])


def _control(method: Any) -> Any:
    """An actor method sent to the actor's ``control`` thread: answered while ``run`` runs."""
    return method.options(concurrency_group="control")


@contextlib.contextmanager
def _scrubbed() -> Iterator[None]:
    """This process's environment without the store's credentials, for the while a local Ray
    starts (its raylet and every worker inherit the environment)."""
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if _SECRET.match(k)}
    try:
        yield
    finally:
        os.environ.update(hidden)
