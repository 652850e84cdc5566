"""Runs end to end through the library API: real store, real worker processes."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conftest import Project
from conveyor.errors import ResourceError
from conveyor.store import open_store

pytestmark = pytest.mark.timeout(120)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_results_flow_downstream_as_json_and_pickle(project: Project) -> None:
    project.write(
        "flow.py",
        """
        from fractions import Fraction
        from conveyor import task, pipeline

        @task
        def numbers(n: int) -> list:
            return list(range(n))

        @task
        def third(n: int) -> Fraction:
            return Fraction(n, 3)

        @task
        def combine(xs: list, f: object) -> str:
            return f"{sum(xs)} {f}"

        @pipeline
        def flow(n: int = 4):
            combine(numbers(n), third(n))
    """,
    )
    result = conveyor.run("flow.py:flow", {"n": 5}, db=project.db)
    assert result.state == "succeeded"
    store = open_store(project.db)
    by_task = {i.task: i for i in store.instances(result.run_id)}
    assert by_task["numbers"].result.endswith(".json")
    assert by_task["third"].result.endswith(".pkl")
    assert json.loads(Path(by_task["combine"].result).read_text()) == "10 5/3"


def test_targets_make_reruns_skip_and_force_reruns(project: Project) -> None:
    project.write(
        "files.py",
        """
        from conveyor import task, pipeline, output, FileTarget

        @task(output="out/{name}.txt")
        def make(name: str) -> None:
            with open("calls.log", "a") as f:
                f.write(name + "\\n")
            output().write_text("hello " + name)

        @task(output="out/both.txt")
        def both(a: FileTarget, b: FileTarget) -> None:
            output().write_text(a.read_text() + " + " + b.read_text())

        @pipeline
        def files():
            both(make("a"), make("b"))
    """,
    )
    first = conveyor.run("files.py:files", db=project.db)
    assert first.state == "succeeded" and first.counts["succeeded"] == 3
    assert (project.root / "out/both.txt").read_text() == "hello a + hello b"
    second = conveyor.run("files.py:files", db=project.db)
    assert second.run_id != first.run_id
    assert second.counts["skipped"] == 3 and second.counts["succeeded"] == 0
    assert sorted(lines(project.root / "calls.log")) == ["a", "b"]
    forced = conveyor.run("files.py:files", db=project.db, force=True)
    assert forced.counts["succeeded"] == 3
    assert sorted(lines(project.root / "calls.log")) == ["a", "a", "b", "b"]


def test_only_missing_targets_and_what_they_need_run(project: Project) -> None:
    project.write(
        "partial.py",
        """
        from conveyor import task, pipeline, output, FileTarget

        @task(output="raw/{day}.csv")
        def dump(day: str) -> None:
            with open("calls.log", "a") as f:
                f.write("dump " + day + "\\n")
            output().write_text(day)

        @task(output="agg/{day}.csv")
        def agg(day: str, raw: FileTarget) -> None:
            with open("calls.log", "a") as f:
                f.write("agg " + day + "\\n")
            output().write_text(raw.read_text() + "!")

        @pipeline
        def partial():
            for day in ["d1", "d2"]:
                agg(day, dump(day))
    """,
    )
    (project.root / "agg").mkdir()
    (project.root / "agg/d1.csv").write_text("done before")
    result = conveyor.run("partial.py:partial", db=project.db)
    assert result.state == "succeeded"
    assert result.counts["skipped"] == 2  # agg d1 (target exists) and dump d1 (nothing needs it)
    assert lines(project.root / "calls.log") == ["dump d2", "agg d2"]


def test_failure_retries_with_backoff_then_leaves_downstream_pending(project: Project) -> None:
    project.write(
        "fails.py",
        """
        from conveyor import task, pipeline

        @task(retries=2, retry_delay=0.05)
        def flaky() -> int:
            with open("attempts.log", "a") as f:
                f.write("x\\n")
            raise ValueError("the source is down")

        @task
        def after_flaky(x: int) -> int:
            return x

        @task
        def independent() -> int:
            return 7

        @pipeline
        def fails():
            after_flaky(flaky())
            independent()
    """,
    )
    result = conveyor.run("fails.py:fails", db=project.db)
    assert result.state == "failed"
    assert len(lines(project.root / "attempts.log")) == 3
    assert result.counts["succeeded"] == 1 and result.counts["pending"] == 1
    assert result.failed[0][0] == "flaky()"
    assert "ValueError: the source is down" in result.failed[0][1]
    store = open_store(project.db)
    run = store.get_run(result.run_id)
    assert run.state == "failed" and "flaky()" in (run.error or "")
    flaky = next(i for i in store.instances(result.run_id) if i.task == "flaky")
    attempts = store.attempts(result.run_id, flaky.id)
    assert [a.state for a in attempts] == ["failed", "failed", "failed"]
    gaps = [b.started_at - a.ended_at for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 0.05 s, then 0.1 s


def test_rerun_after_failure_resumes_without_redoing_succeeded_tasks(project: Project) -> None:
    project.write(
        "resume.py",
        """
        import os
        from conveyor import task, pipeline

        @task
        def first() -> int:
            with open("calls.log", "a") as f:
                f.write("first\\n")
            return 1

        @task
        def second(x: int) -> int:
            with open("calls.log", "a") as f:
                f.write("second\\n")
            if not os.path.exists("fixed"):
                raise RuntimeError("not fixed yet")
            return x + 1

        @pipeline
        def resume():
            second(first())
    """,
    )
    failed = conveyor.run("resume.py:resume", db=project.db)
    assert failed.state == "failed"
    (project.root / "fixed").touch()
    again = conveyor.run("resume.py:resume", db=project.db)
    assert again.state == "succeeded" and again.run_id == failed.run_id
    assert lines(project.root / "calls.log") == ["first", "second", "second"]


def test_timeout_kills_the_attempt(project: Project) -> None:
    project.write(
        "slow.py",
        """
        import time
        from conveyor import task, pipeline

        @task(timeout=0.5)
        def slow() -> None:
            time.sleep(60)

        @pipeline
        def slow_pipeline():
            slow()
    """,
    )
    result = conveyor.run("slow.py:slow_pipeline", db=project.db)
    assert result.state == "failed"
    assert "timed out after 0.5s" in result.failed[0][1]
    assert result.elapsed < 20


def test_a_dead_worker_is_a_lost_attempt_that_is_retried(project: Project) -> None:
    project.write(
        "dies.py",
        """
        import os
        from conveyor import task, pipeline

        @task
        def dies_once() -> str:
            if not os.path.exists("died"):
                open("died", "w").close()
                os._exit(3)
            return "second time lucky"

        @pipeline
        def dies():
            dies_once()
    """,
    )
    result = conveyor.run("dies.py:dies", db=project.db)
    assert result.state == "succeeded"
    store = open_store(project.db)
    (inst,) = store.instances(result.run_id)
    assert inst.lost == 1 and inst.attempts == 2
    assert [a.state for a in store.attempts(result.run_id, inst.id)] == ["lost", "succeeded"]


def test_each_attempt_has_its_own_log_with_stdout_stderr_and_logging(project: Project) -> None:
    project.write(
        "talk.py",
        """
        import logging, sys
        from conveyor import task, pipeline, script

        @task
        def talk() -> None:
            print("to stdout")
            print("to stderr", file=sys.stderr)
            logging.getLogger("talk").info("to logging")

        report = script("job.py", args=["--name", "{who}"])

        @pipeline
        def talking():
            talk()
            report(who="scripted")
    """,
    )
    project.write(
        "job.py",
        """
        import sys
        print("script says", sys.argv[1:])
    """,
    )
    result = conveyor.run("talk.py:talking", db=project.db)
    assert result.state == "succeeded", result.failed
    store = open_store(project.db)
    logs = {
        i.task: Path(store.attempts(result.run_id, i.id)[0].log_path or "").read_text()
        for i in store.instances(result.run_id)
    }
    assert "to stdout" in logs["talk"] and "to stderr" in logs["talk"]
    assert "INFO talk: to logging" in logs["talk"]
    assert "script says ['--name', 'scripted']" in logs["job"]


def test_shell_task_writes_its_target_atomically(project: Project) -> None:
    project.write(
        "sh.py",
        """
        from conveyor import pipeline, shell

        upper = shell("echo {word} | tr a-z A-Z > {output}", name="upper", output="out/{word}.txt")
        broken = shell("echo partial > {output}; exit 4", name="broken", output="out/broken.txt")

        @pipeline
        def sh():
            upper(word="hello world")
            broken()
    """,
    )
    result = conveyor.run("sh.py:sh", db=project.db)
    assert result.state == "failed"
    assert (project.root / "out/hello world.txt").read_text() == "HELLO WORLD\n"
    assert "exited with code 4" in result.failed[0][1]
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["hello world.txt"]


def test_a_crashing_task_leaves_no_half_written_target(project: Project) -> None:
    project.write(
        "half.py",
        """
        from conveyor import task, pipeline, output

        @task(output="out/data.csv")
        def half() -> None:
            with open(output().path, "w") as f:
                f.write("a,b\\n1,")
            raise RuntimeError("crashed halfway")

        @pipeline
        def halfway():
            half()
    """,
    )
    assert conveyor.run("half.py:halfway", db=project.db).state == "failed"
    assert not (project.root / "out").exists() or list((project.root / "out").iterdir()) == []


def test_the_same_instance_required_twice_runs_once(project: Project) -> None:
    project.write(
        "twice.py",
        """
        from conveyor import task, pipeline

        @task
        def load(day: str) -> str:
            with open("calls.log", "a") as f:
                f.write(day + "\\n")
            return day

        @task
        def use(a: str, b: str) -> str:
            return a + b

        @pipeline
        def twice():
            use(load("d1"), load("d1"))
    """,
    )
    result = conveyor.run("twice.py:twice", db=project.db)
    assert result.state == "succeeded" and sum(result.counts.values()) == 2
    assert lines(project.root / "calls.log") == ["d1"]


def test_cpu_requests_take_slots(project: Project) -> None:
    project.write(
        "cpu.py",
        """
        import time
        from conveyor import task, pipeline

        @task(resources={"cpu": 2})
        def big(i: int) -> list:
            start = time.time()
            time.sleep(0.3)
            return [start, time.time()]

        @pipeline
        def cpu():
            for i in range(3):
                big(i)
    """,
    )
    result = conveyor.run("cpu.py:cpu", db=project.db, workers=2)
    assert result.state == "succeeded"
    store = open_store(project.db)
    spans = sorted(json.loads(Path(i.result or "").read_text()) for i in store.instances(result.run_id))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, "two cpu=2 tasks ran at once on 2 slots"
    with pytest.raises(ResourceError, match="cpu=2 but there are 1 worker slots"):
        conveyor.run("cpu.py:cpu", db=project.db, workers=1, new=True)


def test_a_run_on_postgresql_records_and_resumes_like_on_sqlite(project: Project, postgres: Any) -> None:
    project.write(
        "pgflow.py",
        """
        import os
        from conveyor import task, pipeline, output, FileTarget

        @task(output="out/{name}.txt")
        def make(name: str) -> None:
            output().write_text(name)

        @task
        def check(a: FileTarget) -> str:
            if not os.path.exists("fixed"):
                raise RuntimeError("not yet")
            return a.read_text()

        @pipeline
        def pgflow():
            check(make("a"))
    """,
    )
    url = postgres.create_database(f"e_{uuid.uuid4().hex[:10]}")
    failed = conveyor.run("pgflow.py:pgflow", db=url)
    assert failed.state == "failed" and failed.counts["succeeded"] == 1
    (project.root / "fixed").touch()
    again = conveyor.run("pgflow.py:pgflow", db=url)
    assert again.run_id == failed.run_id and again.state == "succeeded"
    store = open_store(url)
    assert [i.attempts for i in store.instances(again.run_id)] == [1, 2]
    shown = project.cli("show", again.run_id, "--json", "--db", url, check=True).stdout
    assert json.loads(shown)["state"] == "succeeded"


def test_an_unreachable_postgresql_is_one_line_without_the_password(project: Project) -> None:
    proc = project.cli("runs", "--db", "postgresql+psycopg://ana:s3cret@127.0.0.1:1/conveyor")
    assert proc.returncode == 2
    assert "store postgresql+psycopg://ana:***@127.0.0.1:1/conveyor" in proc.stderr
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_backoff_shorter_than_a_turn_of_the_loop_still_wakes_the_run(project: Project) -> None:
    project.write(
        "tiny.py",
        """
        from conveyor import task, pipeline

        @task(retries=3, retry_delay=0.0001)
        def flaky() -> None:
            with open("attempts.log", "a") as f:
                f.write("x\\n")
            raise ValueError("again")

        @pipeline
        def tiny():
            flaky()
    """,
    )
    result = conveyor.run("tiny.py:tiny", db=project.db)
    assert result.state == "failed"
    assert len(lines(project.root / "attempts.log")) == 4


def test_a_run_held_by_a_zombie_resumes_and_one_held_by_a_live_process_says_until_when(
    project: Project,
) -> None:
    """A lease held by a process of this machine that is dead or a zombie holds nothing; one held
    by a live process refuses with the lease's end."""
    import socket
    import subprocess
    import time

    from conveyor.engine import prepare, release
    from conveyor.errors import RunBusy

    project.write(
        "one.py",
        """
        from conveyor import task, pipeline

        @task
        def hello() -> str:
            return "hi"

        @pipeline
        def one():
            hello()
    """,
    )
    prepared = prepare("one.py:one", db=project.db)
    release(prepared)  # prepare took the run's lease for this process
    run = prepared.run
    store = open_store(project.db)
    host = socket.gethostname()
    live = subprocess.Popen(["sleep", "60"])
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not become a zombie"
            time.sleep(0.01)
        store.acquire(run.id, f"{host}:{live.pid}", 60)
        until = time.strftime("%H:%M:%S", time.localtime(store.get_run(run.id).lease_expires))
        with pytest.raises(RunBusy, match=rf"being driven by {host}:{live.pid} \(lease until {until}\b"):
            prepare("one.py:one", db=project.db)
        store.acquire(run.id, f"{host}:{zombie.pid}", 60, is_dead=lambda owner: True)
        assert prepare("one.py:one", db=project.db).run.id == run.id  # a zombie holds nothing
        result = conveyor.run("one.py:one", db=project.db)
        assert result.run_id == run.id and result.state == "succeeded"
    finally:
        live.kill()
        live.wait()
        zombie.wait()
