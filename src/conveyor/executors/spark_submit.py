"""``spark_submit`` tasks: an existing PySpark script run with ``spark-submit``.

The command is ``spark-submit --master M --name TASK --conf k=v ... script args``, with the
task's placeholders filled; pyspark's own ``spark-submit`` unless ``SPARK_HOME`` names a Spark
install. Its output goes to the attempt's log; a non-zero exit is a ``SparkError`` whose line
is Spark's reason (the last exception line of the output), a killed driver ``SparkDriverDied``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors.spark import (
    SETTINGS,
    SparkDriverDied,
    SparkError,
    file_size,
    master_for,
    require_once,
    spark_conf,
)

if typing.TYPE_CHECKING:
    from conveyor.tasks import TaskDef

#: log4j's lines (``26/12/06 21:52:00 WARN ...``): never a reason, and at INFO the whole tail.
_LOG4J = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*:")


def run_submit(task: TaskDef, values: Mapping[str, Any], out: Any) -> int:
    """Run a ``spark_submit`` task: ``spark-submit [options] script args`` with placeholders
    filled, its output into the attempt's log; a failure is a ``SparkError`` with Spark's reason."""
    from conveyor.logfiles import AttemptLog
    from conveyor.runner import _fill

    fill = {**values, "output": out}
    script, *args = tuple(task.command)
    options = [_fill(o, fill, quote=False) for o in task.options]
    if "--master" not in options:
        options = ["--master", master_for(task.resources), *options]
    for k, v in spark_conf(task.resources).items():
        if k != "spark.master" and not any(o.startswith(f"{k}=") for o in options):
            options += ["--conf", f"{k}={v}"]
    argv = [str(spark_submit_path()), *options, str(script), *(_fill(a, fill, quote=False) for a in args)]
    require_once()
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    sys.stdout.flush()
    log = sys.stdout if isinstance(sys.stdout, AttemptLog) else None
    fd = log.fileno() if log is not None else None  # a pipe: the log's limit holds for it too
    start = file_size(log.path) if log is not None else 0
    proc = subprocess.Popen(argv, stdout=fd, stderr=fd, stdin=subprocess.DEVNULL, env=env)
    try:
        code = proc.wait()
    except BaseException:  # cancelled: spark-submit execs the driver JVM, which stops its Python
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        if log is not None:
            log.drain()  # its output is in the log before its reason is read from there
    if code == 0:
        return 0
    if code < 0:
        raise SparkDriverDied(f"spark-submit {script}: the Spark driver was killed by signal {-code}")
    why = submit_reason(_read_from(log.path if log is not None else None, start))
    raise SparkError(f"spark-submit {script} exited with code {code}" + (f": {why}" if why else ""))


def _read_from(path: str | None, start: int) -> str:
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            return f.read()
    except OSError:
        return ""


def submit_reason(log: str) -> str | None:
    """The reason in spark-submit's output: its last exception line (a failed stage's Python
    error comes after the ``PythonException`` that wraps it), log4j's lines left out."""
    lines = [line.rstrip() for line in log.splitlines() if not _LOG4J.match(line)]
    found = [line.strip() for line in lines if _EXC_LINE.match(line.strip())]
    return found[-1] if found else None


def spark_submit_path() -> Path:
    """pyspark's bundled ``spark-submit`` (a venv's bin/ has none), or $SPARK_HOME's."""
    home = SETTINGS.get("spark_home") or os.environ.get("SPARK_HOME")
    if home:
        path = Path(home, "bin", "spark-submit")
        if not path.exists():
            raise ExecutorError(f"SPARK_HOME={home} has no bin/spark-submit; unset it to use pyspark's own")
        return path
    from conveyor.executors import need

    pyspark = need("pyspark", "spark")
    return Path(pyspark.__file__).parent / "bin" / "spark-submit"
