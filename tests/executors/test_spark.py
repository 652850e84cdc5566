"""Spark tasks on a real local-mode Spark: what a user notices.

One ``conveyor run`` of one pipeline (module-scoped; one worker, so one JVM serves the session
tasks, as in a user's run) holds every live case: a task aggregating a CSV with its session,
a failed stage, a killed driver JVM and its retry, and ``spark_submit`` of a script that works
and of one that fails. The other tests need no JVM (refusals, the missing-Java line).

Needs Java 17+ and pyspark (``pip install -e '.[test]'``; Debian: openjdk-17-jre-headless).
Outside CI they are skipped without them; in CI (``CI`` set) a missing one fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from conveyor.errors import ExecutorError
from conveyor.executors import spark as S
from conveyor.resources import Resources
from conveyor.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _problem() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install -e '.[test]' (or 'conveyor[spark]')"
    problem = S.java_problem()
    return f"{problem}" if problem else None


PROBLEM = _problem()
if PROBLEM and not os.environ.get("CI"):
    pytest.skip(f"Spark tests need Java 17+ and pyspark: {PROBLEM}", allow_module_level=True)


@pytest.fixture(autouse=True)
def _spark_present() -> None:
    if PROBLEM:  # only in CI: .ci/run installs Java, the test extra pyspark
        pytest.fail(f"CI must run the Spark tests: {PROBLEM}")


SALES = "region,amount\nnorth,10\nsouth,5\nnorth,7\neast,1\nsouth,20\n"

PIPELINE = """
    import os
    import signal
    import time

    from pyspark.sql import SparkSession

    from conveyor import output, pipeline, spark_submit, task


    @task(executor="spark", output="totals.json")
    def totals(spark: SparkSession, src: str = "sales.csv") -> int:
        df = spark.read.csv(src, header=True, inferSchema=True)
        df.createOrReplaceTempView("sales")  # this attempt's own: the next one does not see it
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        rows = df.groupBy("region").sum("amount").collect()
        output().write_text(json.dumps({r["region"]: r["sum(amount)"] for r in rows}))
        return len(rows)


    @task(executor="spark")
    def divide(spark) -> None:
        from pyspark.sql.functions import udf

        @udf("double")
        def inverse(x):
            return 1 / x

        spark.range(3).select(inverse("id")).collect()


    @task(executor="spark", retries=1, retry_delay=0)
    def crash(spark) -> int:
        pid = spark.sparkContext._gateway.proc.pid  # this attempt's own driver JVM
        with open("jvm-pids", "a") as f:
            f.write(f"{pid}\\n")
        with open("seen", "a") as f:  # what an earlier attempt on this JVM left: nothing
            partitions = spark.conf.get("spark.sql.shuffle.partitions")
            f.write(f"{spark.catalog.tableExists('sales')} {partitions}\\n")
        if not os.path.exists("crashed"):
            open("crashed", "w").close()
            os.kill(pid, signal.SIGKILL)
            spark.range(1000).selectExpr("sum(id)").collect()
        return spark.range(10).count()


    @task(executor="spark", timeout=15)
    def stuck(spark) -> None:
        with open("stuck-pid", "w") as f:
            f.write(str(spark.sparkContext._gateway.proc.pid))
        time.sleep(600)


    agg = spark_submit("jobs/agg.py", ["{output}"], output="by-region", conf={"spark.sql.ansi.enabled": True})
    broken = spark_submit("jobs/broken.py", name="broken")


    @pipeline
    def sales():
        done = totals()
        divide()
        stuck(after=[crash(after=[done])])
        agg()
        broken()
"""

AGG = """
    import sys

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    df = spark.read.csv("sales.csv", header=True, inferSchema=True)
    df.groupBy("region").sum("amount").coalesce(1).write.json(sys.argv[1])
    spark.stop()
"""

BROKEN = """
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import udf

    spark = SparkSession.builder.getOrCreate()

    @udf("int")
    def parse(x):
        raise ValueError(f"broken: cannot parse row {x}")

    spark.range(2).select(parse("id")).collect()
"""


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def spark_env(root: Path) -> dict[str, str]:
    """Quick, quiet local Spark on 127.0.0.1 only, through Spark's own spark-defaults.conf."""
    conf = root / "spark-conf"
    conf.mkdir(exist_ok=True)
    (conf / "spark-defaults.conf").write_text(
        "spark.ui.enabled false\n"
        "spark.driver.host 127.0.0.1\n"
        "spark.driver.bindAddress 127.0.0.1\n"
        "spark.sql.shuffle.partitions 1\n"
        "spark.default.parallelism 1\n"
        "spark.driver.memory 512m\n"
        "spark.task.maxFailures 1\n"
    )
    return {"SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": "127.0.0.1"}


class Ran:
    def __init__(self, project: Project, proc: subprocess.CompletedProcess[str], took: float) -> None:
        self.project = project
        self.proc = proc
        self.took = took
        store = open_store(project.db)
        try:
            (run,) = store.list_runs()
            self.run = run
            self.instances = {i.task: i for i in store.instances(run.id)}
            self.attempts = {t: store.attempts(run.id, i.id) for t, i in self.instances.items()}
        finally:
            store.close()

    def log(self, task: str, n: int = -1) -> str:
        return Path(self.attempts[task][n].log_path or "").read_text()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    root = tmp_path_factory.mktemp("spark") / "project"
    root.mkdir()
    write(root, "sales.csv", SALES)
    write(root, "sparkjobs.py", "import json\n" + textwrap.dedent(PIPELINE))
    write(root, "jobs/agg.py", AGG)
    write(root, "jobs/broken.py", BROKEN)
    project = Project(root)
    env = {**project.env(), **spark_env(root)}
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "sparkjobs.py:sales", "--workers", "1"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    yield Ran(project, proc, time.monotonic() - t)
    deadline = time.monotonic() + 30
    for pid in _pids(root):  # the JVMs this run started must be gone
        while _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _state(pid) == "Z", f"driver JVM {pid} outlived its run"


def _pids(root: Path) -> list[int]:
    path = root / "jvm-pids"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return "Z"


def test_a_spark_task_aggregates_a_csv_into_its_target(ran: Ran) -> None:
    assert ran.instances["totals"].state == "succeeded", ran.proc.stdout + ran.proc.stderr
    totals = json.loads((ran.project.root / "totals.json").read_text())
    assert totals == {"north": 17, "south": 25, "east": 1}


def test_a_failed_stage_fails_the_task_with_sparks_reason(ran: Ran) -> None:
    assert ran.proc.returncode != 0  # the run failed: one of its tasks did
    assert ran.instances["divide"].state == "failed"
    (attempt,) = ran.attempts["divide"]
    assert attempt.error == "SparkError: ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in ran.proc.stdout  # the run's summary says why


def test_a_killed_driver_fails_the_attempt_and_the_retry_gets_a_new_jvm(ran: Ran) -> None:
    first, second = ran.attempts["crash"]
    assert first.state == "failed"
    assert first.error is not None and first.error.startswith("SparkDriverDied: the Spark driver died: ")
    assert "killed by signal 9" in first.error
    assert second.state == "succeeded"
    killed, fresh = _pids(ran.project.root)
    assert killed != fresh


def test_a_timeout_kills_the_worker_and_its_driver_jvm(ran: Ran) -> None:
    (attempt,) = ran.attempts["stuck"]
    assert attempt.state != "succeeded" and "timed out after 15s" in (attempt.error or ""), attempt
    pid = int((ran.project.root / "stuck-pid").read_text())
    deadline = time.monotonic() + 30
    while _state(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _state(pid) == "Z", f"the timed-out attempt's JVM {pid} lives on"


def test_each_attempt_has_a_session_of_its_own_on_the_workers_jvm(ran: Ran) -> None:
    # crash's first attempt ran on the JVM that totals used, after it: no view, no conf left
    first = (ran.project.root / "seen").read_text().splitlines()[0]
    assert first == "False 1"


def test_spark_submit_runs_a_script_with_its_log_in_the_attempts_log(ran: Ran) -> None:
    assert ran.instances["agg"].state == "succeeded", ran.log("agg")
    parts = list((ran.project.root / "by-region").glob("part-*.json"))
    rows = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
    assert {r["region"]: r["sum(amount)"] for r in rows} == {"north": 17, "south": 25, "east": 1}


def test_a_failing_spark_submit_shows_the_scripts_reason(ran: Ran) -> None:
    (attempt,) = ran.attempts["broken"]
    assert attempt.state == "failed"
    assert attempt.error == (
        "SparkError: spark-submit jobs/broken.py exited with code 1: ValueError: broken: cannot parse row 0"
    )
    assert "Traceback" in ran.log("broken")  # the whole story is in the attempt's log


# -- no JVM needed --------------------------------------------------------------------------------
def test_a_gpu_or_more_cores_than_the_master_has_are_refused_in_one_line(tmp_path: Path) -> None:
    executor = S.SparkExecutor(1, str(tmp_path), settings={"master": "local[2]"})
    assert executor.check(Resources(cpu=2)) is None
    gpu = executor.check(Resources(gpu=1))
    assert gpu is not None and "\n" not in gpu
    assert gpu.startswith("asks for gpu=1 but Spark's master local[2] has no GPUs")
    assert "cpu=3" in (executor.check(Resources(cpu=3)) or "")
    default = S.SparkExecutor(1, str(tmp_path), settings={})  # local[{cpu}]: any cpu fits
    assert default.check(Resources(cpu=2)) is None
    cluster = S.SparkExecutor(1, str(tmp_path), settings={"master": "spark://h:7077"})
    assert cluster.check(Resources(gpu=1)) is None  # the cluster manager decides


def test_resources_map_to_spark_conf() -> None:
    local = S.spark_conf(Resources(cpu=2, memory=768 * 2**20), {})
    assert local["spark.master"] == "local[2]"
    assert local["spark.driver.memory"] == "768m"
    cluster = S.spark_conf(
        Resources(cpu=4, memory=2**31, gpu=1, custom={"fpga": 1}),
        {"master": "yarn", "conf": {"spark.executor.memory": "1g", "spark.app.name": "x"}},
    )
    assert cluster["spark.master"] == "yarn"
    assert cluster["spark.executor.cores"] == "4"
    assert cluster["spark.executor.memory"] == "2048m"  # the task's request beats the setting
    assert cluster["spark.executor.resource.gpu.amount"] == "1"
    assert cluster["spark.executor.resource.fpga.amount"] == "1"
    assert cluster["spark.app.name"] == "x"


def test_the_session_parameter_is_not_a_task_parameter() -> None:
    from conveyor import spark_submit, task

    @task(executor="spark")
    def count(spark: Any, n: int = 3) -> int:
        return 0

    assert [p.name for p in count.params] == ["n"]
    submit = spark_submit("jobs/agg.py", ["{day}", "{output}"], conf={"spark.x": "{day}"}, output="o/{day}")
    assert [p.name for p in submit.params] == ["day"] and submit.executor == "spark"


def test_without_java_the_executor_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "jdk"
    empty.mkdir()
    env = {**os.environ, "JAVA_HOME": str(empty), "PATH": os.path.dirname(sys.executable)}
    code = (
        "from conveyor.errors import ExecutorError\n"
        "from conveyor.executors.spark import SparkExecutor\n"
        "try:\n    SparkExecutor(1, '.')\nexcept ExecutorError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        f"the spark executor needs Java 17+: JAVA_HOME={empty} has no bin/java; "
        "apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"
    )
    env.pop("JAVA_HOME")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().startswith("the spark executor needs Java 17+: no java on PATH")


def test_bad_settings_are_one_line() -> None:
    with pytest.raises(ExecutorError, match="has no setting 'mastr'"):
        S.configure({"mastr": "local[2]"})
    S.configure({})


COUNT = """
    from conveyor import pipeline, task


    @task(executor="spark")
    def count(spark, n: int = 3) -> int:
        return spark.range(n).count()


    @pipeline
    def counting(n: int = 3):
        count(n=n)
"""


def test_a_spark_task_called_as_a_plain_function_gets_a_local_session(tmp_path: Path) -> None:
    write(tmp_path, "counting.py", COUNT)
    env = {**os.environ, **spark_env(tmp_path)}
    code = "from counting import count; print('count', count(n=5)); print('again', count(2))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "count 5\nagain 2" in out.stdout, out.stderr[-3000:]


def test_a_spark_task_without_java_fails_with_the_line_that_says_what_to_install(project: Project) -> None:
    project.write("counting.py", COUNT)
    empty = project.root / "no-jdk"
    empty.mkdir()
    env = {**project.env(), "JAVA_HOME": str(empty), "PATH": os.path.dirname(sys.executable)}
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "counting.py:counting", "--workers", "1"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr  # refused before any run exists
    line = f"the spark executor needs Java 17+: JAVA_HOME={empty} has no bin/java"
    assert line in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_without_pyspark_the_executor_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['pyspark'] = None\n"
        "from conveyor.errors import ExecutorError\n"
        "from conveyor.executors.spark import SparkExecutor\n"
        "try:\n    SparkExecutor(1, '.')\nexcept ExecutorError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = out.stdout.strip()
    assert "\n" not in line and line.startswith("the spark executor needs 'pyspark'")
    assert line.endswith("install it with: pip install 'conveyor[spark]'")


PROBE = """
    from conveyor import pipeline, task


    @task(executor="spark", resources={"memory": "600MiB"})
    def probe(spark) -> list:
        conf = spark.sparkContext.getConf()
        heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory() // 2**20
        return [spark.sparkContext.master, conf.get("spark.conveyor.probe"), heap]


    @pipeline
    def probing():
        probe()
"""


def test_the_executors_settings_reach_its_workers_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Driven directly: a worker forked by the executor makes its session with the executor's
    master and conf (``[executor.spark]``), and the task's memory is the driver JVM's heap."""
    from conveyor import artifacts
    from conveyor.executors.port import Launch
    from conveyor.loader import load_pipeline
    from conveyor.runner import GRAPHS, Job

    write(tmp_path, "probe.py", PROBE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    graph = load_pipeline(f"{tmp_path / 'probe.py'}:probing").build({})
    (node,) = list(graph)
    GRAPHS["probe-run"] = graph
    conf = {"spark.ui.enabled": False, "spark.driver.host": "127.0.0.1", "spark.conveyor.probe": "yes"}
    executor = S.SparkExecutor(2, str(tmp_path / "logs"), settings={"master": "local[1]", "conf": conf})
    job = Job(
        "probe-run", node.id, 1, str(tmp_path / "1.log"), str(tmp_path / "art"), {}, "", {}, str(tmp_path)
    )
    try:
        executor.submit(job, Launch(), time.time())
        outcomes: list[Any] = []
        deadline = time.monotonic() + 300
        while not outcomes and time.monotonic() < deadline:
            outcomes += list(executor.poll(1.0))
    finally:
        executor.close()
        GRAPHS.pop("probe-run", None)
        S.configure({})
    (outcome,) = outcomes
    assert outcome.status == "succeeded", outcome.error
    master, probe, heap = artifacts.load(outcome.result)
    assert (master, probe) == ("local[1]", "yes")
    assert 500 <= heap <= 600  # spark.driver.memory=600m: the JVM's max heap (less a survivor space)
