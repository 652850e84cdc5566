"""A runner on another machine sends its attempt's log in chunks (the execution API); the server
keeps at most its log limit of it, then one marker line, and tells the runner to send on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.execution.client import AttemptApi, LogShipper
from conveyor.execution.local import serve_locally
from conveyor.store import Store, open_store
from execution.started import Started, start_run
from execution.test_execution_routes import bearer, begin, path

KiB = 1024


def cut_marker(limit: str) -> bytes:
    return f"[conveyor: log cut at {limit}; the task went on]\n".encode()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    store: Store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield start_run(store, tmp_path / "logs")
    store.close()


def test_chunks_past_the_servers_limit_are_dropped_after_one_marker(
    started: Started, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_LIMIT", "10 KiB")
    s = started
    with serve_locally(s.store, tmp_path / "home") as api, httpx.Client(base_url=api.url) as h:
        run = begin(h, s)
        offset = 0
        for i in range(8):  # 8 chunks of 4 KiB: 32 KiB sent, the limit is 10 KiB
            chunk = (b"%d" % i) * (4 * KiB - 1) + b"\n"
            r = h.put(path(s, "log"), params={"offset": offset}, content=chunk, headers=bearer(run))
            assert r.status_code == 200, r.text
            offset = int(r.json()["size"])
        assert offset == 32 * KiB  # the runner is told to send on, never to send again
    log = s.log_path("inst", 1).read_bytes()
    assert log.startswith(b"0000") and log.endswith(b"\n" + cut_marker("10 KiB"))
    assert len(log) == 10 * KiB + 1 + len(cut_marker("10 KiB")) and log.count(b"[conveyor: log cut") == 1


def test_a_runners_shipper_sends_a_long_log_once_and_the_server_keeps_its_limit(
    started: Started, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_LIMIT", "64 KiB")
    s = started
    local = tmp_path / "runner" / "attempt.log"  # the runner's own log, on its machine
    local.parent.mkdir()
    local.write_bytes(b"".join(b"line %06d of a chatty task\n" % i for i in range(40_000)))  # 1 MB
    with serve_locally(s.store, tmp_path / "home") as api, httpx.Client(base_url=api.url) as h:
        attempt = AttemptApi(api.url, begin(h, s))
        attempt.attach(s.run_id, "inst", 1)
        shipper = LogShipper(attempt, str(local))
        shipper.ship()
        attempt.close()
    assert shipper.sent == local.stat().st_size and not shipper.refused
    log = s.log_path("inst", 1).read_bytes()
    assert log.endswith(cut_marker("64 KiB")) and len(log) <= 64 * KiB + 1 + len(cut_marker("64 KiB"))
    assert log.startswith(b"line 000000 of a chatty task\n")
