"""Reading logs through the API keeps a real server's memory bounded: a followed log is streamed a
chunk at a time, and an answer holds only the end of a log, within the server's limit, with a
marker where it was cut (a one-line log of 30 MB comes back as its last MiB)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live import ServerProcess, make_project, start_server

from conftest import Project
from conveyor.store import open_store

V1 = "/api/v1"
MiB = 1024 * 1024

#: The most a server may grow while four clients follow a 50 MB log and others read its end.
GROWTH = 30 * MiB


@dataclass
class Logged:
    server: ServerProcess
    run_id: str
    log_path: Path


def _run_and_log(project: Project, n: int) -> tuple[str, Path]:
    """A run of ``quick`` driven by conveyor run; its id and its attempt's log file."""
    project.cli("run", "pipes.py:quick", "-p", f"n={n}", check=True)
    store = open_store(project.db)
    try:
        run = store.list_runs(limit=1)[0]
        [attempt] = store.attempts(run.id)
    finally:
        store.close()
    assert attempt.log_path
    return run.id, Path(attempt.log_path)


@pytest.fixture
def logged(project: Project) -> Iterator[Logged]:
    make_project(project)
    run_id, path = _run_and_log(project, 1)
    server = start_server(project, "--no-scheduler")
    try:
        yield Logged(server, run_id, path)
    finally:
        server.stop()


def _status(pid: int, key: str) -> int:
    """A figure of /proc/PID/status in bytes (VmRSS, VmHWM: the peak)."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    assert m, f"no {key} in /proc/{pid}/status"
    return int(m.group(1)) * 1024


def _reset_peak(pid: int) -> int:
    """Start measuring the peak from now (writing 5 to clear_refs resets VmHWM); the RSS now."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak since the start counts: the assertion only gets stricter
    return _status(pid, "VmRSS")


def _write_lines(path: Path, size: int) -> bytes:
    """Fill the log with ``size`` bytes of numbered lines; its last line."""
    line = b"%09d the task said something worth keeping, or so it thought at the time ...\n"
    n = size // len(line % 0)
    with open(path, "wb") as f:
        for start in range(0, n, 10_000):
            f.write(b"".join(line % i for i in range(start, min(n, start + 10_000))))
    return line % (n - 1)


def _follow(url: str, run_id: str, into: list[int], last: list[bytes]) -> None:
    size, tail = 0, b""
    params = {"task": "double", "follow": "true"}
    with httpx.stream("GET", f"{url}{V1}/runs/{run_id}/logs", params=params, timeout=120) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            size += len(chunk)
            tail = (tail + chunk)[-200:]
    into.append(size)
    last.append(tail)


def test_following_and_reading_a_50_mb_log_keeps_the_servers_memory_bounded(logged: Logged) -> None:
    server, http = logged.server, logged.server.client()
    pid = server.proc.pid
    # warm the server up on the small log: what it imports and caches is not growth
    for _ in range(2):
        http.get(f"{V1}/runs/{logged.run_id}/logs", params={"task": "double", "follow": "true"})
        http.get(f"{V1}/runs/{logged.run_id}/logs", params={"tail": 5})
    last_line = _write_lines(logged.log_path, 50 * MiB)
    size = logged.log_path.stat().st_size
    before = _reset_peak(pid)

    sizes: list[int] = []
    lasts: list[bytes] = []
    followers = [
        threading.Thread(target=_follow, args=(server.url, logged.run_id, sizes, lasts)) for _ in range(4)
    ]
    for t in followers:
        t.start()
    tails = [
        http.get(f"{V1}/runs/{logged.run_id}/logs", params={"task": "double", "tail": 10}) for _ in range(3)
    ]
    whole = http.get(f"{V1}/runs/{logged.run_id}/logs")  # no tail: still only the log's end
    for t in followers:
        t.join(120)
    peak = _status(pid, "VmHWM")
    growth = peak - before
    print(f"server RSS before {before / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB: +{growth / MiB:.1f} MiB")

    assert sizes == [size] * 4 and all(t.endswith(last_line) for t in lasts)  # streamed whole
    assert growth < GROWTH, f"the server grew by {growth / MiB:.1f} MiB reading a 50 MB log"
    for answer in tails:
        [log] = answer.json()
        assert log["truncated"] and log["text"].splitlines() == [
            line.decode() for line in _last_lines(logged.log_path, 10)
        ]
    [log] = whole.json()
    assert log["truncated"] and log["text"].endswith(last_line.decode())
    assert log["text"].startswith("[conveyor: the log's first ") and len(log["text"]) <= MiB + 200


def _last_lines(path: Path, n: int) -> list[bytes]:
    with open(path, "rb") as f:
        f.seek(-4096, 2)
        return f.read().splitlines()[-n:]


def test_the_tail_of_a_one_line_30_mb_log_is_bounded_and_marked(logged: Logged) -> None:
    http = logged.server.client()
    with open(logged.log_path, "wb") as f:
        for _ in range(30):
            f.write(b"x" * MiB)
        f.write(b" the end\n")
    for params in ({"task": "double", "tail": 5}, {"task": "double"}):
        answer = http.get(f"{V1}/runs/{logged.run_id}/logs", params=params)
        assert answer.status_code == 200
        [log] = answer.json()
        text = log["text"]
        assert log["truncated"] and len(text) <= MiB + 200, len(text)
        assert text.startswith("[conveyor: line cut; the log's first 29 MiB are not shown] …xxx")
        assert text.endswith("x the end\n")
