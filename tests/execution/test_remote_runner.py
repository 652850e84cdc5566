"""A whole attempt run by a runner that holds no store URL, only the execution API's address and
its token, in a process of its own (as on an engine's machine), against a real server and store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor import artifacts
from conveyor.engine import instance_records
from conveyor.execution.local import Endpoint, serve_locally
from conveyor.execution.tokens import mint
from conveyor.loader import load_pipeline
from conveyor.store import Store
from execution.started import Started, start_run

RUNNER = Path(__file__).with_name("remote_runner.py")

FLOW = """\
import os, time
from conveyor import pipeline, task

@task
def hello(ticks: int = 3, pause: float = 0.4) -> dict:
    print("ENV", sorted(os.environ.items()), flush=True)
    for i in range(ticks):
        print(f"tick {i}", flush=True)
        time.sleep(pause)
    return {"ticks": ticks, "db": os.environ.get("CONVEYOR_DB")}

@pipeline
def flow(ticks: int = 3, pause: float = 0.4):
    hello(ticks, pause)
"""


class Remote:
    """A run of ``flow`` started in the store; its attempts run by remote runners."""

    def __init__(self, store: Store, root: Path, artifact_dir: str, **params: Any) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "flow.py").write_text(FLOW)
        self.root = root
        self.params = {k: str(v) for k, v in params.items()}
        self.target = f"{root / 'flow.py'}:flow"
        graph = load_pipeline(self.target).build(params)
        run_id = f"20261206-000000-{uuid.uuid4().hex[:6]}"
        self.started: Started = start_run(
            store, root / "server-logs", instance_records(run_id, graph), run_id
        )
        self.instance = next(iter(graph)).id
        self.artifact_dir = artifact_dir
        self.store = store

    def runner(
        self, api: str, number: int = 1, token: str | None = None, **extra: Any
    ) -> subprocess.Popen[str]:
        job = {
            "run_id": self.started.run_id, "instance": self.instance, "attempt": number,
            "log_path": str(self.root / "runner-scratch" / f"{number}.log"),  # the engine's local disk
            "artifact_dir": self.artifact_dir, "inputs": {}, "target": self.target,
            "params": self.params, "workdir": str(self.root),
        }  # fmt: skip
        token = token or mint(self.store, self.started.run_id, self.instance, number)
        env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
        env["CONVEYOR_HOME"] = str(self.root / "runner-home")  # nothing of the store's there
        return subprocess.Popen(
            [sys.executable, str(RUNNER), json.dumps({"job": job, "api": api, "token": token, **extra})],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.root,
        )  # fmt: skip

    def server_log(self, number: int = 1) -> Path:
        return self.started.log_path(self.instance, number)

    def attempt(self, number: int = 1) -> Any:
        return self.started.attempt(self.instance, number)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(what: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_runner_without_the_store_url_runs_an_attempt_through_the_api(
    store: Store, api: Endpoint, tmp_path: Path, s3: str
) -> None:
    from s3 import new_bucket

    bucket = new_bucket()
    r = Remote(store, tmp_path / "project", f"s3://{bucket}/conveyor/artifacts/RUN")
    proc = r.runner(api.url)
    # the log is followable while the attempt runs: ticks appear before its end is recorded
    wait_for(lambda: r.server_log().exists() and b"tick 0" in r.server_log().read_bytes())
    assert r.attempt().state == "running"
    code, out, err = finish(proc)
    assert code == 0 and out.strip().endswith("OUTCOME succeeded"), (out, err)
    a = r.attempt()
    assert a.state == "succeeded", a
    [inst] = store.instances(r.started.run_id)
    assert inst.result is not None and inst.result.startswith(f"s3://{bucket}/conveyor/artifacts/RUN/")
    assert artifacts.load(inst.result) == {"ticks": 3, "db": None}
    log = r.server_log().read_text()
    assert log.count("tick 0") == 1 and "tick 2" in log and "ENV" in log  # whole, nothing twice
    assert "CONVEYOR_DB" not in log and store.url not in log and "sqlite:///" not in log


@pytest.mark.slow
def test_a_stale_runner_is_refused_and_overwrites_nothing(
    store: Store, api: Endpoint, tmp_path: Path
) -> None:
    r = Remote(store, tmp_path / "project", str(tmp_path / "artifacts"), ticks=6, pause=0.3)
    proc = r.runner(api.url)
    wait_for(lambda: r.server_log().exists() and b"tick 0" in r.server_log().read_bytes())
    assert store.declare_lost(r.started.run_id, r.instance, 1, time.time(), "runner silent")  # a new owner
    code, out, err = finish(proc)
    assert code == 0 and "OUTCOME succeeded" in out, (out, err)  # it ran, but its end does not count
    assert "the attempt's end was refused" in err and "lost already" in err and "Traceback" not in err
    a = r.attempt()
    assert (a.state, a.error) == ("lost", "runner silent")
    assert [i.result for i in store.instances(r.started.run_id)] == [None]
    # a start token of the lost attempt can no longer start it
    code, out, err = finish(r.runner(api.url))
    assert code == 3 and "OUTCOME stale" in out and "do not start it" in err, (out, err)


@pytest.mark.slow
def test_the_api_away_for_a_while_the_runners_end_lands_when_it_is_back(store: Store, tmp_path: Path) -> None:
    first = serve_locally(store, tmp_path / "home")
    port = int(first.url.rsplit(":", 1)[1])
    r = Remote(store, tmp_path / "project", str(tmp_path / "artifacts"), ticks=4, pause=0.5)
    proc = r.runner(first.url)
    wait_for(lambda: r.server_log().exists() and b"tick 0" in r.server_log().read_bytes())
    first.close()  # the server goes away while the attempt runs...
    time.sleep(4.0)  # ...past the attempt's end: the runner retries its log and its end
    assert proc.poll() is None and r.attempt().state == "running"
    again = serve_locally(store, tmp_path / "home", port=port)
    try:
        code, out, err = finish(proc)
        assert code == 0 and "OUTCOME succeeded" in out, (out, err)
        assert "retrying" in err
        assert r.attempt().state == "succeeded"
        log = r.server_log().read_text()
        assert [log.count(f"tick {i}") for i in range(4)] == [1, 1, 1, 1]
    finally:
        again.close()
