"""The Spark executor: attempts run in local worker processes that are each a Spark *driver*.

Spark distributes the work itself: a worker holds one ``SparkSession`` whose master is
``local[N]`` (the default, ``local[{cpu}]``: as many cores as the task asks for) or a cluster's
(``spark://``, ``yarn``, ``k8s://``: the worker is then the client-mode driver on this machine
and the cluster runs the executors). The pool is the local executor's (timeouts, cancels, a
worker that dies), with one difference: an attempt takes one *driver slot*, whatever cpu it asks
for, because its cpu is Spark's to give (``check`` refuses what the master cannot).

Two kinds of task reach Spark:

- ``@task(executor="spark")`` on a function with a parameter named ``spark`` (or annotated
  ``SparkSession``): the runner passes the worker's session (``session``); that parameter is
  not one of the task's parameters. Called as a plain function, the task gets a local session.
- ``spark_submit("jobs/agg.py", conf={...})``: an existing PySpark script, run with pyspark's
  own ``spark-submit`` (``conveyor.executors.spark_submit``).

Spark's own failures are failed attempts with Spark's reason, as one line (``SparkError``): a
failed stage gives the Python exception's last line (``ZeroDivisionError: division by zero``),
a JVM-side error its first line, and a killed driver JVM "the Spark driver died: ...". The next
attempt in that worker gets a new JVM.

Settings (``[executor.spark]`` in conveyor.toml): ``master``, ``conf`` (a table of Spark conf),
``drivers`` (the pool's size, default 1), ``java_home``. See docs/spark.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shutil
import stat
import subprocess
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from conveyor.errors import ConveyorError, ExecutorError
from conveyor.executors.local import LocalExecutor
from conveyor.executors.port import Launch
from conveyor.recorder import Recorder
from conveyor.resources import Resources
from conveyor.runner import Job

if typing.TYPE_CHECKING:
    from conveyor.tasks import TaskDef

#: Conf every session gets unless the settings say otherwise: no progress bars in logs, and
#: only Spark's warnings (its INFO lines would bury the task's own output).
DEFAULT_CONF: Mapping[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "WARN",
}

#: The settings of the executor that forked this worker (``configure``); empty: the defaults.
SETTINGS: dict[str, Any] = {}


class SparkError(ConveyorError):
    """Spark failed the attempt: a failed stage, an error in the query, or a dead driver."""


class SparkDriverDied(SparkError):
    """The Spark driver's JVM died while the attempt used it."""


# -- settings ---------------------------------------------------------------------------------
def configure(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and keep ``settings`` for this process and the workers it forks from now on."""
    s = dict(settings or {})
    unknown = sorted(set(s) - {"master", "conf", "drivers", "java_home", "spark_home"})
    if unknown:
        raise ExecutorError(
            f"[executor.spark] has no setting {unknown[0]!r}; "
            "the settings are master, conf, drivers, java_home, spark_home"
        )
    conf = s.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise ExecutorError(f"[executor.spark] conf must be a table of Spark settings, got {conf!r}")
    s["conf"] = {str(k): _conf_value(v) for k, v in conf.items()}
    drivers = s.get("drivers", 1)
    if isinstance(drivers, bool) or not isinstance(drivers, int) or drivers < 1:
        raise ExecutorError(f"[executor.spark] drivers must be a whole number >= 1, got {drivers!r}")
    master = s.get("master")
    if master is not None and (not isinstance(master, str) or not master):
        raise ExecutorError(f"[executor.spark] master must be a Spark master URL, got {master!r}")
    SETTINGS.clear()
    SETTINGS.update(s)
    if s.get("java_home"):
        os.environ["JAVA_HOME"] = str(s["java_home"])
    if s.get("spark_home"):
        os.environ["SPARK_HOME"] = str(s["spark_home"])
    return s


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def java_problem() -> str | None:
    """Why Spark cannot start a JVM here (one line), or None. Mirrors ``spark-class``:
    ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else ``java`` on PATH; Spark 4 needs 17+."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    fix = "apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH and JAVA_HOME is not set"
        return f"the spark executor needs Java 17+: {where}; {fix}"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the spark executor needs Java 17+: {java} -version failed ({exc}); {fix}"
    first = out.splitlines()[0] if out else ""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', first)
    if not m:
        return f"the spark executor needs Java 17+: cannot tell the version of {java} ({first!r}); {fix}"
    major = int(m.group(2) or 0) if m.group(1) == "1" else int(m.group(1))
    if major < 17:
        return f"the spark executor needs Java 17+: {java} is Java {major}; {fix}"
    return None


def require() -> None:
    """pyspark importable and a Java 17+: else a one-line ``ExecutorError`` saying what to do."""
    from conveyor.executors import need

    need("pyspark", "spark")
    problem = java_problem()
    if problem is not None:
        raise ExecutorError(problem)


# -- resources --------------------------------------------------------------------------------
_LOCAL = re.compile(r"^local(?:\[(\*|\d+)(?:,\s*\d+)?\])?$")


def local_cores(master: str) -> int | None:
    """The cores of a local master (``local``: 1, ``local[4]``: 4, ``local[*]``: all); None
    for a cluster's master (or a ``{cpu}`` template, which fits any request)."""
    m = _LOCAL.match(master)
    if not m:
        return None
    n = m.group(1)
    if n is None:
        return 1
    return os.cpu_count() or 1 if n == "*" else int(n)


def master_for(resources: Resources, settings: Mapping[str, Any] | None = None) -> str:
    """The session's master: the setting (default ``local[{cpu}]``), ``{cpu}`` filled."""
    s = SETTINGS if settings is None else settings
    return str(s.get("master") or "local[{cpu}]").replace("{cpu}", str(resources.cpu))


def _is_local(master: str) -> bool:
    return master.startswith("local")


def spark_conf(resources: Resources, settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The session conf for an attempt asking for ``resources``: the defaults, then the
    settings' ``conf``, then what the resources map to (docs/spark.md has the table)."""
    s = SETTINGS if settings is None else settings
    master = master_for(resources, s)
    conf = {**DEFAULT_CONF, **(s.get("conf") or {}), "spark.master": master}
    mib = f"{max(resources.memory // 2**20, 1)}m" if resources.memory else None
    if _is_local(master):  # one JVM is driver and executor: its heap is the memory
        if mib:
            conf["spark.driver.memory"] = mib
        return conf
    if resources.cpu:
        conf["spark.executor.cores"] = str(resources.cpu)
    if mib:
        conf["spark.executor.memory"] = mib
    if resources.gpu:
        conf["spark.executor.resource.gpu.amount"] = str(resources.gpu)
        conf["spark.task.resource.gpu.amount"] = str(resources.gpu)
    for name, amount in resources.custom.items():
        conf[f"spark.executor.resource.{name}.amount"] = str(amount)
    return conf


def refusal(resources: Resources, settings: Mapping[str, Any] | None = None) -> str | None:
    """Why Spark's master could never give ``resources`` (one line), or None."""
    s = SETTINGS if settings is None else settings
    master = master_for(resources, s)
    if not _is_local(master):
        return None  # the cluster manager decides; it says why an application waits
    cores = local_cores(master)
    if resources.gpu:
        return (
            f"asks for gpu={resources.gpu} but Spark's master {master} has no GPUs; "
            "set [executor.spark] master to a cluster's (spark://, yarn, k8s://) that has them"
        )
    if resources.custom:
        name = sorted(resources.custom)[0]
        return f"asks for {name}={resources.custom[name]} but Spark's master {master} has no custom resources"
    if cores is not None and resources.cpu > cores:
        return (
            f"asks for cpu={resources.cpu} but Spark's master {master} has {cores} cores; "
            "raise [executor.spark] master (local[{cpu}] gives each task what it asks for)"
        )
    return None


# -- the session ------------------------------------------------------------------------------
_cached: tuple[int, tuple[tuple[str, str], ...], Any] | None = None  # pid, static conf, session


def session(resources: Resources | None = None, conf: Mapping[str, str] | None = None) -> Any:
    """This process's SparkSession for ``resources`` (one session per static conf): made on
    first use, kept for the next attempts, and made again when the conf differs (a new JVM:
    Spark cannot change a live JVM's master or heap) or its JVM died."""
    global _cached
    want = spark_conf(resources or Resources(), None)
    want.update(conf or {})
    key = tuple(sorted(want.items()))
    if _cached is not None:
        pid, have, spark = _cached
        if pid == os.getpid() and have == key and _alive():
            if spark.sparkContext._jsc is not None:
                return spark
            _cached = None  # the task stopped it: a new one on the same JVM (same static conf)
        else:
            forget(stop=pid == os.getpid())
    require_once()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for k, v in want.items():
        builder = builder.config(k, v)
    try:
        with _JvmOutput():
            spark = builder.getOrCreate()
    except Exception as exc:
        forget(stop=False)
        master = want["spark.master"]
        raise SparkError(f"Spark could not start a session on {master}: {reason(exc)}") from None
    _cached = (os.getpid(), key, spark)
    return spark


_required = False


def require_once() -> None:
    global _required
    if not _required:
        require()
        _required = True


def _gateway_proc() -> Any:
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    gateway = SparkContext._gateway
    return getattr(gateway, "proc", None) if gateway is not None else None


def _alive() -> bool:
    proc = _gateway_proc()
    return proc is None or proc.poll() is None


def driver_death() -> str | None:
    """How this process's Spark driver JVM ended, if it did (one phrase), else None."""
    proc = _gateway_proc()
    if proc is None or proc.poll() is None:
        return None
    code = proc.returncode
    if code < 0:
        return f"its JVM (pid {proc.pid}) was killed by signal {-code}"
    return f"its JVM (pid {proc.pid}) exited with code {code}"


def _settle(wait: float = 2.0) -> None:
    proc = _gateway_proc()
    if proc is not None:
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass  # alive: the error was something else


def forget(*, stop: bool = True) -> None:
    """Drop this process's session and JVM, so the next ``session`` starts afresh. ``stop``:
    stop them (they are ours); else only forget (a dead JVM, or one our parent process made
    before it forked us)."""
    global _cached
    _cached = None
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        return
    gateway = SparkContext._gateway
    if stop and gateway is not None:
        try:
            if SparkContext._active_spark_context is not None:
                SparkContext._active_spark_context.stop()
        except Exception:
            pass
        proc = getattr(gateway, "proc", None)
        try:
            gateway.shutdown()
        except Exception:
            pass
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
                proc.wait(timeout=10)
            except Exception:
                pass
    elif gateway is not None:
        proc = getattr(gateway, "proc", None)
        if proc is not None and proc.poll() is not None:
            proc.wait()  # reap the dead JVM
    SparkContext._active_spark_context = None
    SparkContext._gateway = None
    SparkContext._jvm = None
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None


class _JvmOutput:
    """While a new JVM starts in a worker, point fds 1 and 2 at this worker's Spark log (beside
    the worker's log), so the JVM's output can be copied into each attempt's log (``_Copy``)."""

    path: ClassVar[str | None] = None

    def __enter__(self) -> None:
        self.saved: list[int] = []
        here = file_of_fd(1)
        if here is None or sys.stdout is sys.__stdout__:
            type(self).path = None
            return
        path = os.path.join(os.path.dirname(here), f"spark-{os.getpid()}.log")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.saved = [os.dup(1), os.dup(2)]
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        type(self).path = path

    def __exit__(self, *exc: Any) -> None:
        for target, fd in zip((1, 2), self.saved, strict=False):
            os.dup2(fd, target)
            os.close(fd)


def file_of_fd(fd: int) -> str | None:
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    return None


class _Copy:
    """Copy what the JVM wrote to its log during an attempt into the attempt's log."""

    def __init__(self) -> None:
        self.path = _JvmOutput.path
        self.start = file_size(self.path)

    def __call__(self) -> None:
        path = _JvmOutput.path
        if path is None:
            return
        start = self.start if path == self.path else 0
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(start)
                text = f.read(1_000_000)
        except OSError:
            return
        if text.strip():
            print(f"--- Spark's driver log ({path}) ---\n{text.rstrip()}\n---", flush=True)


def file_size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


# -- function tasks ---------------------------------------------------------------------------
def session_parameter(fn: Callable[..., Any]) -> str | None:
    """The parameter of ``fn`` that receives the SparkSession: annotated ``SparkSession``, else
    named ``spark``. Found without importing pyspark (the annotation is compared by name)."""
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        ann = p.annotation
        name = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
        if isinstance(name, str) and name.rsplit(".", 1)[-1] == "SparkSession":
            return p.name
    return "spark" if "spark" in sig.parameters else None


def call(task: TaskDef, values: Mapping[str, Any]) -> Any:
    """Run a spark function task with its session; Spark's failures become ``SparkError``."""
    assert task.fn is not None
    kwargs = dict(values)
    name = session_parameter(task.fn)
    if name is not None and name not in kwargs:
        kwargs[name] = _fresh(session(task.resources))
    copy = _Copy()
    try:
        return task.fn(**kwargs)
    except BaseException as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from None
    finally:
        copy()


def _fresh(base: Any) -> Any:
    """A session of its own for one attempt on the worker's JVM and SparkContext: the SQL conf
    it sets, its temporary views and UDFs do not leak into the next attempt. It is the active
    one, so ``SparkSession.getActiveSession()`` in the task's code finds it."""
    spark = base.newSession()
    try:
        from pyspark.sql import SparkSession

        SparkSession._activeSession = spark
        spark._jvm.SparkSession.setActiveSession(spark._jsparkSession)
    except Exception:
        pass
    return spark


_PY_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b[^\n]*)$", re.M)


def reason(exc: BaseException) -> str:
    """Spark's reason, one line: the last exception line of a failed stage's Python traceback,
    else the first line of the message (JVM-side errors put their condition there)."""
    text = str(exc).strip()
    cond = getattr(exc, "getCondition", lambda: None)()
    if cond == "PYTHON_EXCEPTION" or "Traceback (most recent call last)" in text:
        lines = _PY_LINE.findall(text)
        if lines:
            return str(lines[-1]).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return first


def translate(exc: BaseException) -> SparkError | None:
    """Spark's own failure as a ``SparkError`` (one line), or None for the task's own errors."""
    mod = type(exc).__module__
    if (mod.startswith("py4j") and type(exc).__name__ != "Py4JJavaError") or isinstance(exc, ConnectionError):
        _settle()  # the connection broke: the JVM may be dying, give it a moment to be seen dead
    death = driver_death()
    if death is not None:
        forget(stop=False)  # the next attempt in this worker starts a new JVM
        return SparkDriverDied(f"the Spark driver died: {death}")
    if mod.startswith(("pyspark.errors", "py4j")):
        return SparkError(reason(exc))
    if isinstance(exc, ConnectionError) and _gateway_proc() is not None:
        return SparkDriverDied(f"the Spark driver died: the connection to its JVM failed ({exc})")
    return None


# -- the executor -----------------------------------------------------------------------------
class SparkExecutor(LocalExecutor):
    """A pool of local Spark drivers (see the module's docstring)."""

    name: ClassVar[str] = "spark"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Recorder | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``workers``: the local cpu the run may use (Spark's master gives the attempts their
        cores, so it does not size the pool: ``drivers`` does)."""
        s = configure(settings)  # the workers fork from this process: they see SETTINGS
        require()
        super().__init__(int(s.get("drivers", 1)), log_dir, recorder=recorder)
        self.settings = s
        self.cpu = workers

    def check(self, resources: Resources) -> str | None:
        return refusal(resources, self.settings)

    def submit(self, job: Job, launch: Launch, now: float) -> None:
        """As the local pool's, but every attempt takes one driver slot: its cpu is Spark's."""
        one = dataclasses.replace(launch, resources=dataclasses.replace(launch.resources, cpu=1))
        super().submit(job, one, now)


__all__ = [
    "DEFAULT_CONF",
    "SETTINGS",
    "SparkDriverDied",
    "SparkError",
    "SparkExecutor",
    "call",
    "configure",
    "forget",
    "java_problem",
    "refusal",
    "session",
    "spark_conf",
]
