"""``ApiRecorder`` in this process against a real server: waiting for another run's attempt of
the same instance, and a log sent in chunks as it grows."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from conveyor.execution.client import ApiRecorder
from conveyor.execution.local import Endpoint
from conveyor.execution.tokens import mint
from conveyor.runner import Job, Outcome
from conveyor.store import Store
from conveyor.store.records import Holder
from execution.started import start_run


def job(run_id: str, log: Path) -> Job:
    return Job(run_id, "inst", 1, str(log), "", {}, "p.py:p", {})


def test_a_runner_waits_for_another_runs_attempt_and_takes_its_outcome(
    store: Store, api: Endpoint, tmp_path: Path
) -> None:
    a, b = start_run(store, tmp_path / "logs-a"), start_run(store, tmp_path / "logs-b")
    ja, jb = job(a.run_id, tmp_path / "a.log"), job(b.run_id, tmp_path / "b.log")
    ra = ApiRecorder(api.url, mint(store, a.run_id, "inst", 1), interval=0.2)
    rb = ApiRecorder(api.url, mint(store, b.run_id, "inst", 1), interval=0.2)
    assert ra.begin(ja) is True
    holder = rb.begin(jb)
    assert isinstance(holder, Holder) and holder.run_id == a.run_id
    said: list[str] = []
    got: list[Outcome | None] = []
    waiting = threading.Thread(target=lambda: got.append(rb.wait(jb, holder, said.append)))
    waiting.start()
    time.sleep(1.0)  # a's runner beats: b goes on waiting
    assert waiting.is_alive()
    ra.end(ja, Outcome(a.run_id, "inst", 1, "succeeded", "/a.json", None, 1.0, time.time()))
    waiting.join(10)
    [out] = got
    assert out is not None and (out.status, out.result, out.waited_for) == ("succeeded", "/a.json", a.run_id)
    rb.end(jb, out)
    assert b.attempt("inst", 1).state == "succeeded" and b.attempt("inst", 1).waited_for == a.run_id


def test_the_log_is_sent_as_it_grows_and_whole_at_the_end(
    store: Store, api: Endpoint, tmp_path: Path
) -> None:
    s = start_run(store, tmp_path / "logs")
    local = tmp_path / "runner.log"
    rec = ApiRecorder(api.url, mint(store, s.run_id, "inst", 1), interval=0.1)
    assert rec.begin(job(s.run_id, local)) is True
    served = s.log_path("inst", 1)
    with open(local, "a") as f:
        f.write("first\n")
        f.flush()
        deadline = time.monotonic() + 10
        while not (served.exists() and served.read_text() == "first\n"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        f.write("x" * 600_000 + "\nlast\n")  # more than two chunks, written just before the end
    rec.end(job(s.run_id, local), Outcome(s.run_id, "inst", 1, "failed", None, "boom", 1.0, 2.0))
    assert served.read_bytes() == local.read_bytes()
    assert (s.attempt("inst", 1).state, s.attempt("inst", 1).error) == ("failed", "boom")


def test_a_runner_whose_api_never_answers_does_not_start(
    store: Store, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        rec = ApiRecorder(nobody, mint(store, "r1", "inst", 1), patience=1.0)
        assert rec.begin(job("r1", tmp_path / "r.log")) is False
    err = capfd.readouterr().err
    assert "retrying" in err and "did not answer for 1s: not starting" in err


def test_a_server_with_a_small_body_limit_gets_smaller_chunks(store: Store, tmp_path: Path) -> None:
    from conveyor.execution.local import serve_locally

    endpoint = serve_locally(store, tmp_path / "home", max_body=65536)  # as `conveyor server --max-body`
    try:
        s = start_run(store, tmp_path / "logs")
        local = tmp_path / "runner.log"
        local.write_text("y" * 300_000 + "\n")
        rec = ApiRecorder(endpoint.url, mint(store, s.run_id, "inst", 1), interval=0.1)
        assert rec.begin(job(s.run_id, local)) is True
        rec.end(job(s.run_id, local), Outcome(s.run_id, "inst", 1, "succeeded", None, None, 1.0, 2.0))
        assert s.log_path("inst", 1).read_bytes() == local.read_bytes()
    finally:
        endpoint.close()
