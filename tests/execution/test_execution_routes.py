"""The execution API's routes, on a real uvicorn server on loopback over a real store."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from conveyor.execution.local import Endpoint, serve_locally
from conveyor.execution.tokens import mint
from conveyor.store import open_store
from execution.started import Started

END = {"status": "succeeded", "ended_at": 1.5e9, "result": "/r.json"}


def path(s: Started, what: str, number: int = 1, instance: str = "inst") -> str:
    return f"/execution/v1/attempts/{s.run_id}/{instance}/{number}/{what}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def one_line(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail, detail


def begin(h: httpx.Client, s: Started, number: int = 1) -> str:
    r = h.post(
        path(s, "begin", number),
        json={"owner": "elsewhere:1"},
        headers=bearer(mint(s.store, s.run_id, "inst", number)),
    )
    assert r.status_code == 200, r.text
    assert r.json()["execute"] is True
    return str(r.json()["token"])


def test_refused_tokens_get_one_line(api: Endpoint, started: Started) -> None:
    s = started
    start = mint(s.store, s.run_id, "inst", 1)
    with httpx.Client(base_url=api.url) as h:
        one_line(h.post(path(s, "begin"), json={"owner": "x:1"}), 401, "an attempt token is needed")
        tampered = start[:-3] + ("AAA" if not start.endswith("AAA") else "BBB")
        one_line(h.post(path(s, "begin"), json={"owner": "x:1"}, headers=bearer(tampered)), 401, "signature")
        expired = mint(s.store, s.run_id, "inst", 1, kind="run", ttl=10, now=time.time() - 100)
        one_line(h.post(path(s, "heartbeat"), headers=bearer(expired)), 401, "expired")
        other = mint(s.store, s.run_id, "inst", 2)
        one_line(
            h.post(path(s, "begin"), json={"owner": "x:1"}, headers=bearer(other)),
            403,
            "another" if False else "this token is for attempt 2",
        )
        one_line(h.post(path(s, "heartbeat"), headers=bearer(start)), 403, "a start token can only begin")
        one_line(h.post(path(s, "end"), json=END, headers=bearer(start)), 403, "a start token can only begin")
        one_line(
            h.put(path(s, "log"), params={"offset": 0}, content=b"x", headers=bearer(start)),
            403,
            "start token",
        )
    assert s.attempt("inst", 1).state == "running"  # nothing was written


def test_an_attempt_begins_beats_and_ends_once(api: Endpoint, started: Started) -> None:
    s = started
    with httpx.Client(base_url=api.url) as h:
        run = begin(h, s)
        r = h.post(path(s, "heartbeat"), headers=bearer(run))
        assert r.status_code == 200 and r.json()["token"] != run  # renewed
        run = r.json()["token"]
        r = h.post(path(s, "end"), json=END, headers=bearer(run))
        assert r.json() == {"recorded": True, "again": False}
        r = h.post(path(s, "end"), json=END, headers=bearer(run))  # the answer was lost: sent again
        assert r.json() == {"recorded": True, "again": True}
        one_line(
            h.post(path(s, "end"), json={**END, "status": "failed"}, headers=bearer(run)),
            409,
            "succeeded already",
        )
        one_line(h.post(path(s, "heartbeat"), headers=bearer(run)), 409, "no longer current")
    assert s.attempt("inst", 1).state == "succeeded"
    assert [i.result for i in s.store.instances(s.run_id)] == ["/r.json"]


def test_a_stale_attempt_is_refused_and_overwrites_nothing(api: Endpoint, started: Started) -> None:
    s = started
    with httpx.Client(base_url=api.url) as h:
        run = begin(h, s)
        assert s.store.declare_lost(s.run_id, "inst", 1, time.time(), "runner silent")  # a new owner
        one_line(h.post(path(s, "heartbeat"), headers=bearer(run)), 409, "no longer current")
        one_line(h.post(path(s, "end"), json=END, headers=bearer(run)), 409, "it is lost already")
        start = mint(s.store, s.run_id, "inst", 1)
        one_line(
            h.post(path(s, "begin"), json={"owner": "x:1"}, headers=bearer(start)), 409, "do not start it"
        )
    a = s.attempt("inst", 1)
    assert (a.state, a.error) == ("lost", "runner silent")
    assert [i.result for i in s.store.instances(s.run_id)] == [None]


def test_log_chunks_land_in_the_attempts_log_once(api: Endpoint, started: Started) -> None:
    s = started
    log = s.log_path("inst", 1)
    with httpx.Client(base_url=api.url) as h:
        run = begin(h, s)

        def put(offset: int, data: bytes) -> int:
            r = h.put(path(s, "log"), params={"offset": offset}, content=data, headers=bearer(run))
            assert r.status_code == 200, r.text
            return int(r.json()["size"])

        assert put(0, b"one\n") == 4
        assert log.read_bytes() == b"one\n"  # followable at once: where `conveyor logs -f` reads
        assert put(4, b"two\n") == 8
        assert put(4, b"two\n") == 8  # a retried chunk: rewritten, not appended
        assert put(20, b"gap\n") == 8  # past the end: nothing written; send from 8
        assert put(8, b"three\n") == 14
        one_line(
            h.put(path(s, "log"), params={"offset": 0}, content=b"x" * (300 * 1024), headers=bearer(run)),
            413,
            "at most",
        )
    assert log.read_bytes() == b"one\ntwo\nthree\n"


def test_a_token_minted_through_one_server_is_good_on_another(postgres: object, tmp_path: Path) -> None:
    """Two servers, each with its own connection to one PostgreSQL store, keep nothing: a token
    minted by the driver (a third process's store) is good on both, and so are the renewed ones."""
    from execution.started import start_run

    url = postgres.create_database("t_two_servers")  # type: ignore[attr-defined]
    driver, a_store, b_store = open_store(url), open_store(url), open_store(url)
    a, b = serve_locally(a_store, tmp_path), serve_locally(b_store, tmp_path)
    try:
        s = start_run(driver, tmp_path / "logs")
        with httpx.Client() as h:
            r = h.post(
                a.url + path(s, "begin"),
                json={"owner": "x:1"},
                headers=bearer(mint(driver, s.run_id, "inst", 1)),
            )
            token = r.json()["token"]
            for i in range(6):  # alternating servers, each renewing the token the other minted
                r = h.post((a.url if i % 2 else b.url) + path(s, "heartbeat"), headers=bearer(token))
                assert r.status_code == 200, r.text
                token = r.json()["token"]
            r = h.post(b.url + path(s, "end"), json=END, headers=bearer(token))
            assert r.json()["recorded"] is True
        assert s.attempt("inst", 1).state == "succeeded"
    finally:
        a.close()
        b.close()
        for st in (driver, a_store, b_store):
            st.close()


@pytest.mark.parametrize("what", ["begin", "waiting", "heartbeat", "log", "end"])
def test_every_route_is_documented(what: str) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "execution-api.md").read_text()
    assert f"/{what}" in docs
