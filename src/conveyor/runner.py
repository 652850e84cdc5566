"""The runner: executes one attempt inside a worker process.

It resolves the task's inputs (upstream targets or artifacts), stages the output targets under
temporary names, captures stdout, stderr and logging into the attempt's log, calls the task, and
on success renames the targets into place and saves the return value as an artifact.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import artifacts
from conveyor.errors import ConveyorError, TargetError
from conveyor.logfiles import AttemptLog
from conveyor.provenance import determinism
from conveyor.provenance.gitinfo import commit_time
from conveyor.store.records import Holder
from conveyor.targets import Output, Writer, flatten, rebuild
from conveyor.targets.base import NotWritten
from conveyor.targets.tables import AlreadyDone

if TYPE_CHECKING:
    from conveyor.graph import Graph
    from conveyor.recorder import Recorder
    from conveyor.tasks import TaskDef


#: Why a job queued for a worker whose driver died never started (not the task's fault).
NEVER_STARTED = "the process driving the run stopped before the attempt started"


class Cancelled(BaseException):
    """Raised inside a running task when its attempt is cancelled (SIGTERM to the worker)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt to run: all a worker needs, picklable."""

    run_id: str
    instance: str
    attempt: int
    log_path: str
    artifact_dir: str
    inputs: Mapping[str, str | None]  # parameter -> upstream result reference
    target: str  # how to load the pipeline on a cache miss
    params: Mapping[str, str]
    workdir: str = ""  # where the run was submitted: its relative paths start there
    holder: Holder | None = None  # another run's attempt executes this instance: wait for it
    replace: bool = False  # --force: table targets replace their partition


@dataclass(frozen=True, slots=True)
class Outcome:
    run_id: str
    instance: str
    attempt: int
    status: str  # succeeded | failed | cancelled
    result: str | None = None
    error: str | None = None
    started: float = 0.0
    ended: float = 0.0
    waited_for: str | None = None  # took the outcome of this run's attempt of the same instance
    outputs: str | None = None  # JSON: what its targets hold (their fingerprints), once it succeeded


#: Graphs by run id; the driver registers them before workers fork, so workers find them here.
GRAPHS: dict[str, Graph] = {}
#: The most graphs a worker loads itself before it forgets the oldest.
GRAPHS_KEPT = 16


def graph_for(job: Job) -> Graph:
    graph = GRAPHS.get(job.run_id)
    if graph is None:  # a worker that did not inherit it: load the pipeline again
        from conveyor import params as P
        from conveyor.loader import load_pipeline

        pipe = load_pipeline(job.target)
        graph = pipe.build(P.from_json(pipe.params, job.params))  # the run's params, as stored
        while len(GRAPHS) >= GRAPHS_KEPT:  # a long-lived engine worker serves run after run
            GRAPHS.pop(next(iter(GRAPHS)))
        GRAPHS[job.run_id] = graph
    return graph


class _SinkHandler(logging.Handler):
    sink: AttemptLog | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.sink is not None:
            try:
                self.sink.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)


_handler = _SinkHandler()
_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def install_logging() -> None:
    """Route the worker's logging into the running attempt's log (called once per worker)."""
    root = logging.getLogger()
    root.addHandler(_handler)
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


_OWN = str(Path(__file__).resolve().parent)


def user_traceback(exc: BaseException) -> str:
    """The exception's traceback without Conveyor's own frames: the user's code is the story."""
    tb = traceback.TracebackException.from_exception(exc)
    frames = [f for f in tb.stack if not f.filename.startswith(_OWN)]
    if frames:
        tb.stack = traceback.StackSummary.from_list(frames)
    return "".join(tb.format()).rstrip()


def run_attempt(job: Job, waiting: tuple[Recorder, Holder] | None = None) -> Outcome:
    """Run ``job``; with ``waiting`` (this runner's recorder and the attempt that holds the
    instance's claim), first wait for that attempt and take its outcome if it has one."""
    started = time.time()
    sink = AttemptLog(job.log_path)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    _handler.sink = sink
    staged: list[tuple[Output, Any]] = []
    try:
        if waiting is not None:
            recorder, holder = waiting
            taken = recorder.wait(job, holder, lambda line: print(line, flush=True))
            if taken is not None:
                return taken
            started = time.time()
        graph = graph_for(job)
        node = graph[job.instance]
        values = dict(node.literals)
        for name, upstream_id in node.inputs.items():
            up = graph[upstream_id]
            values[name] = up.output if up.output is not None else artifacts.load(job.inputs.get(name))
        finals = flatten(node.output)
        staged = [(f, f.stage(replace=job.replace)) for f in finals]
        out = rebuild(node.output, [s for _, s in staged]) if finals else None
        value = None
        determinism.enter(job.params, job.instance, commit_time(job.workdir or os.getcwd(), job.run_id))
        try:
            value = node.task.execute(values, out, node.output)
            outputs = _finish(staged, Writer(job.run_id, job.instance, job.attempt), node.task.name)
        except AlreadyDone as done:  # another attempt of this instance committed it: so is this
            print(done, flush=True)
            for target, handle in staged:
                target.abandon(handle)
            outputs = [done.fingerprint]
        staged = []
        ref = None if value is None else artifacts.save(value, Path(job.artifact_dir), job.instance)
        return Outcome(
            job.run_id,
            job.instance,
            job.attempt,
            "succeeded",
            ref,
            None,
            started,
            time.time(),
            outputs=json.dumps([o for o in outputs if o]) if any(outputs) else None,
        )
    except (Cancelled, KeyboardInterrupt):  # KeyboardInterrupt: an engine's cancel (Ray's)
        return Outcome(
            job.run_id, job.instance, job.attempt, "cancelled", None, "cancelled", started, time.time()
        )
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, ConveyorError) else user_traceback(exc)
        try:
            sink.write(error + "\n")
        except Exception:
            pass
        return Outcome(job.run_id, job.instance, job.attempt, "failed", None, error, started, time.time())
    finally:
        for target, handle in staged:
            target.abandon(handle)
        _handler.sink = None
        sys.stdout, sys.stderr = old_out, old_err
        sink.close()


def _finish(staged: list[tuple[Output, Any]], writer: Writer, task: str) -> list[dict[str, Any] | None]:
    """Make the task's targets final, files first and database transactions last (the commit
    that says "done"); their fingerprints. Each one made final is taken off ``staged``: what
    is left there when this raises is abandoned."""
    out = []
    for target, handle in sorted(staged, key=lambda s: s[0].order):
        try:
            out.append(target.finish(handle, writer))
        except NotWritten as exc:
            raise TargetError(f"task {task} {exc}") from None
        staged.remove((target, handle))
    return out


# -- scripts and shell commands ---------------------------------------------------------------
class _Quoted:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return shlex.quote(format(self.value, spec))

    def __getitem__(self, key: Any) -> _Quoted:
        return _Quoted(self.value[key])

    def __getattr__(self, name: str) -> _Quoted:
        return _Quoted(getattr(self.value, name))


def _fill(template: str, values: Mapping[str, Any], quote: bool) -> str:
    wrap = _Quoted if quote else (lambda v: v)
    return template.format(**{k: wrap(v) for k, v in values.items()})


def run_command(task: TaskDef, values: Mapping[str, Any], out: Any) -> int:
    """Run a script or shell task; its output goes to this attempt's log. Returns 0 or raises."""
    fill = {**values, "output": out}
    if task.kind == "script":
        script, *args = tuple(task.command)
        argv = [sys.executable, str(script), *(_fill(a, fill, quote=False) for a in args)]
        shell = False
    else:
        argv = [_fill(str(task.command), fill, quote=True)]
        shell = True
    sys.stdout.flush()
    log = sys.stdout if isinstance(sys.stdout, AttemptLog) else None
    fd = log.fileno() if log is not None else None  # a pipe: the log's limit holds for it too
    proc = subprocess.Popen(
        argv[0] if shell else argv,
        shell=shell,
        stdout=fd,
        stderr=fd,
        stdin=subprocess.DEVNULL,
    )
    try:
        code = proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        if log is not None:
            log.drain()  # its output is in the log before anything written after it
    if code != 0:
        what = f"script {task.command[0]}" if task.kind == "script" else "shell command"
        reason = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise ConveyorError(f"{what} {reason}{_tail(log)}")
    return 0


def _tail(log: AttemptLog | None, lines: int = 5) -> str:
    tail = log.last_lines(lines) if log is not None else []
    return (":\n" + "\n".join(tail)) if tail else ""


class Control:
    """A few words of memory shared by the executor and one worker process.

    The executor may send a worker jobs while the current one still runs (queued jobs). Whether
    a queued job is taken back before it starts, and which job a SIGTERM is meant for, is settled
    here under one lock, so neither side ever waits for the other. Sequence numbers grow with
    every job the executor sends, and a worker takes its jobs in that order.

    - ``begin(seq)`` (worker): the worker reached job ``seq``; False if it is marked: skip it;
    - ``revoke(seq)`` (executor): mark job ``seq`` unless the worker reached it; True if marked;
    - ``stop(seq)`` (executor): mark job ``seq``, reached or not; True if the worker reached it
      (then a SIGTERM cancels it: the worker's handler acts only for a marked job).
    """

    __slots__ = ("_lock", "_words")

    MARKS = 16  # marked jobs the worker has not reached yet: the pool keeps fewer on a worker

    def __init__(self, ctx: Any) -> None:
        self._words = ctx.RawArray(ctypes.c_longlong, 1 + self.MARKS)  # reached, marks...
        self._lock = ctx.Lock()

    def begin(self, seq: int) -> bool:
        with self._lock:
            self._words[0] = seq
            return seq not in self._words[1:]

    def revoke(self, seq: int) -> bool:
        with self._lock:
            if self._words[0] >= seq:
                return False
            self._mark(seq)
            return True

    def stop(self, seq: int) -> bool:
        with self._lock:
            self._mark(seq)
            return bool(self._words[0] >= seq)

    def _mark(self, seq: int) -> None:
        words, reached = self._words, self._words[0]
        for i in range(1, 1 + self.MARKS):
            if words[i] in (0, seq) or words[i] < reached:  # free: unused, or a job gone past
                words[i] = seq
                return
        raise RuntimeError("too many jobs marked on one worker")  # the pool keeps fewer

    def started(self, seq: int) -> bool:
        return bool(self._words[0] >= seq)

    def marked(self, seq: int) -> bool:
        """Without the lock: the SIGTERM handler asks, maybe while ``begin`` holds it. The mark
        was written before the signal was sent."""
        return seq in self._words[1:]


#: In a worker: the sequence number of the job running now (0: a job sent without one), or None.
_running: int | None = None
_control: Control | None = None


def _cancel_handler(signum: int, frame: Any) -> None:
    seq = _running
    if seq is None:
        return  # between jobs: a late cancel for a job that already ended
    if seq and _control is not None and not _control.marked(seq):
        return  # meant for a job that ended meanwhile
    raise Cancelled()


#: The longest error text a worker sends back; the whole text is in the attempt's log. Messages
#: both ways stay far below a pipe's 64 KiB, so the executor and a worker never both block
#: writing to each other.
MAX_ERROR = 8000


def short_error(error: str | None) -> str | None:
    if error is None or len(error) <= MAX_ERROR:
        return error
    return "[... cut: the whole text is in the attempt's log ...]\n" + error[-MAX_ERROR:]


def pack(job: Job, seq: int, *, inherited: bool = False) -> tuple[Any, ...]:
    """The compact form of ``job`` that the executor sends a worker (``Job(*msg[1:])`` again).

    A forked worker ``inherited`` the run's graph (``GRAPHS``), so the pipeline's target and
    parameters, which can be large, stay home.
    """
    target, params = ("", {}) if inherited else (job.target, job.params)
    return (
        seq,
        job.run_id,
        job.instance,
        job.attempt,
        job.log_path,
        job.artifact_dir,
        job.inputs,
        target,
        params,
        job.workdir,
        job.holder,
        job.replace,
    )


_recorder: Recorder | None = None


def worker_main(
    conn: Any, index: int, worker_log: str, control: Control | None = None, recorder: Recorder | None = None
) -> None:
    """A worker process: receive jobs, run them one by one, send back outcomes.

    A message is ``None`` (stop), a ``Job`` (answered with an ``Outcome``), or the executor's
    compact form ``(seq, *job fields)``, answered with ``(seq, status, result, error, started,
    ended, waited_for, outputs)``; status ``revoked`` means the executor took the job back before it started.
    """
    global _control, _recorder
    _control = control
    _recorder = recorder
    os.setpgid(0, 0)  # our own process group: the terminal's Ctrl-C does not reach us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _cancel_handler)  # it only acts while a job runs
    Path(worker_log).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(worker_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    install_logging()
    parent = os.getppid()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            _orphaned(conn, [])
            return
        batch = msg if isinstance(msg, list) else [msg]  # a list: several jobs, in order
        for k, one in enumerate(batch):
            if one is None:
                return  # told to stop
            if os.getppid() != parent:
                _orphaned(conn, batch[k:])  # start nothing more
                return
            try:
                reply = _answer(one, control)
            except Cancelled:  # a cancel that landed just as the job ended
                reply = _cancelled(one)
            try:
                conn.send(reply)
            except OSError:
                _orphaned(conn, batch[k + 1 :])
                return


def _orphaned(conn: Any, unstarted: list[Any]) -> None:
    """The process driving the run died: a deferred recorder records what its driver may not
    have (its last ends, and the jobs queued here that will never start)."""
    rec = _recorder
    if rec is None or not rec.deferred:
        return
    queued = list(unstarted)
    try:
        while conn.poll(0):
            more = conn.recv()
            queued += more if isinstance(more, list) else [more]
    except (EOFError, OSError):
        pass
    rec.orphaned([Job(*m[1:]) for m in queued if isinstance(m, tuple)])


def _answer(msg: Any, control: Control | None) -> Any:
    global _running
    try:
        if isinstance(msg, Job):
            _running = 0
            out = _attempt(msg)
            return dataclasses.replace(out, error=short_error(out.error))
        seq = msg[0]
        _running = seq  # before begin(): once the executor sees it started, it may aim a SIGTERM
        if control is not None and not control.begin(seq):
            return (seq, "revoked", None, None, 0.0, 0.0, None, None)
        job = Job(*msg[1:])
        if job.workdir:
            _enter(job.workdir)
        out = _attempt(job)
        error = short_error(out.error)
        return (seq, out.status, out.result, error, out.started, out.ended, out.waited_for, out.outputs)
    finally:
        _running = None


def _attempt(job: Job) -> Outcome:
    """One attempt, recorded by its runner when the worker has a recorder."""
    rec = _recorder
    if rec is None:
        return run_attempt(job)
    if rec.deferred:  # its driver claimed the instance: it names the holder, if another
        rec.current = (job.run_id, job.instance, job.attempt)
        rec.start()
        out = run_attempt(job, None if job.holder is None else (rec, job.holder))
        rec.done(job, out)
        return out
    begun = rec.begin(job)
    if begun is False:
        return stale(job)
    out = run_attempt(job, None if begun is True else (rec, begun))
    rec.end(job, out)
    return out


def stale(job: Job) -> Outcome:
    """What a runner answers for an attempt its store refused to begin: another owner of the
    run declared it lost (or it was cancelled) meanwhile."""
    now = time.time()
    return Outcome(
        job.run_id, job.instance, job.attempt, "failed", None,
        "the attempt was no longer current: its run's new owner declared it lost", now, now,
    )  # fmt: skip


def _enter(workdir: str) -> None:
    """Work where the job's run was submitted: one scheduler's pool serves runs from anywhere."""
    try:
        if os.getcwd() != workdir:
            os.chdir(workdir)
    except OSError:
        pass  # gone: the attempt fails on its paths and says which


def _cancelled(msg: Any) -> Any:
    if isinstance(msg, Job):
        return Outcome(msg.run_id, msg.instance, msg.attempt, "cancelled", error="cancelled")
    return (msg[0], "cancelled", None, "cancelled", 0.0, 0.0, None, None)
