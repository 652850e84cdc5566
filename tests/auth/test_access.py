"""Every route and every role over real HTTP: the matrix below is what a user may expect; the routes
are read from the OpenAPI schema, so a new route without a rule (or a row here) fails."""

from __future__ import annotations

import functools
import re
from typing import Any

from auth.conftest import World
from conveyor.api import openapi_schema
from conveyor.auth import RULES, people
from conveyor.auth.roles import OUTSIDE_SCHEMA

#: Who asks, in the matrix's columns: nobody, an admin, the lead, a member and a viewer of team a
#: (the project's), a member of team b.
WHO = (None, "admin", "lead", "member", "viewer", "other")

#: The answer each expects: ok (2xx), 401 (sign in), 403 (role too weak), 404 (another team's).
MATRIX = {
    "healthz": "ok ok ok ok ok ok",
    "prometheus": "401 ok ok ok ok ok",
    "list_pipelines": "401 ok ok ok ok 403",
    "get_pipeline": "401 ok ok ok ok 404",
    "reload_pipelines": "401 ok ok 403 403 403",
    "trigger": "401 ok ok ok 403 404",
    "list_runs": "401 ok ok ok ok ok",
    "get_run": "401 ok ok ok ok 404",
    "cancel_run": "401 ok ok ok 403 404",
    "retry_run": "401 ok ok ok 403 404",
    "logs": "401 ok ok ok ok 404",
    "result": "401 ok ok ok ok 404",
    # double is no notebook task: whoever may read the run is told so (404); another team's run is
    # hidden (404). tests/notebooks/test_serving.py reads a real one.
    "notebook": "401 404 404 404 404 404",
    "get_graph": "401 ok ok ok ok 404",
    "get_changes": "401 ok ok ok ok 404",
    "list_attempts": "401 ok ok ok ok 404",
    "list_backfills": "401 ok ok ok ok 403",
    "create_backfill": "401 ok ok ok 403 403",
    "get_backfill": "401 ok ok ok ok 404",
    "cancel_backfill": "401 ok ok ok 403 404",
    "list_schedules": "401 ok ok ok ok 403",
    "pause_schedule": "401 ok ok 403 403 404",
    "resume_schedule": "401 ok ok 403 403 404",
    "list_schedulers": "401 ok ok ok ok ok",
    "start_session": "ok ok ok ok ok ok",
    "end_session": "401 ok ok ok ok ok",
    "whoami": "401 ok ok ok ok ok",
    "list_users": "401 ok 403 403 403 403",
    "add_user": "401 ok 403 403 403 403",
    "disable_user": "401 ok 403 403 403 403",
    "list_tokens": "401 ok ok ok ok ok",
    "create_token": "401 ok ok ok ok ok",
    "revoke_token": "401 ok ok ok ok ok",
    "list_teams": "401 ok ok ok ok ok",
    "add_team": "401 ok 403 403 403 403",
    "list_members": "401 ok ok ok ok 404",
    "grant_role": "401 ok ok 403 403 404",
    "revoke_role": "401 ok ok 403 403 404",
    "get_quota": "401 ok ok ok ok 404",
    "set_quota": "401 ok 403 403 403 404",
    "set_user_weights": "401 ok ok 403 403 404",
    "list_audit": "401 ok ok ok ok ok",
}


@functools.cache
def operations() -> dict[str, tuple[str, str]]:
    """Every route of the schema: operation id -> (method, path)."""
    schema = openapi_schema()
    return {
        op["operationId"]: (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }


def test_every_route_has_a_rule_and_a_row_in_the_matrix() -> None:
    ops = set(operations())
    rules = set(RULES) - OUTSIDE_SCHEMA  # the git remote's: tests/git
    assert ops == rules, f"without a rule: {ops - rules}; rules of no route: {rules - ops}"
    assert ops == set(MATRIX)


def _request(world: World, op: str, who: str | None) -> tuple[str, dict[str, Any]]:
    """The path with its parameters filled, and the request's query and body: each call valid for
    whoever may make it (fresh names, a token of the caller's own to revoke, ...)."""
    n = world.next()
    token_owner = who or "admin"
    values = {
        "run_id": world.run_a,
        "name": "nightly" if op in ("pause_schedule", "resume_schedule") else "quick",
        "backfill_id": world.backfill,
        "team": "a",
        "user": "spare",
        "token_id": people.create_token(world.store, "test", token_owner).record.id,
    }
    if op == "revoke_role":
        people.grant(world.store, "test", "a", "spare", "viewer")
    method, path = operations()[op]
    path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
    kw: dict[str, Any] = {}
    bodies: dict[str, Any] = {
        "trigger": {"params": {"n": 7}},
        "create_backfill": {"pipeline": "daily", "start": "2026-03-01", "end": "2026-03-01"},
        "start_session": {"token": world.tokens[token_owner]},
        "add_user": {"name": f"user{n}"},
        "create_token": {"label": "matrix"},
        "add_team": {"name": f"team{n}"},
        "grant_role": {"user": "spare", "role": "viewer"},
        "set_quota": {"limits": {"cpu": 4}},
        "set_user_weights": {"users": {"lead": 2.0}},
    }
    if op in bodies:
        kw["json"] = bodies[op]
    if op in ("result", "notebook"):
        kw["params"] = {"task": "double"}
    return method + " " + path, kw


def test_every_route_answers_every_role_as_the_matrix_says(world: World) -> None:
    wrong = []
    for op, row in MATRIX.items():
        for who, expected in zip(WHO, row.split(), strict=True):
            line, kw = _request(world, op, who)
            method, path = line.split(" ", 1)
            with world.client(who) as http:
                answer = http.request(method, path, **kw)
            got = "ok" if answer.status_code < 300 else str(answer.status_code)
            if got != expected:
                wrong.append(
                    f"{op} as {who or 'nobody'}: {answer.status_code} {answer.text[:120]} (want {expected})"
                )
            if got == "401":
                assert answer.headers["www-authenticate"] == "Bearer"
            if got == "403":
                assert "\n" not in answer.json()["detail"] and answer.json()["detail"]
    assert not wrong, "\n".join(wrong)


def test_a_role_too_weak_is_told_which_role_it_needs(world: World) -> None:
    with world.client("viewer") as http:
        answer = http.post(f"/api/v1/runs/{world.run_a}/cancel")
    assert answer.status_code == 403
    assert answer.json()["detail"] == "this needs the role member in team a; you are viewer"


def test_another_teams_run_is_answered_exactly_as_a_run_that_does_not_exist(world: World) -> None:
    with world.client("other") as http:
        theirs = http.get(f"/api/v1/runs/{world.run_a}")
        missing = http.get("/api/v1/runs/20991231-000000-ffffff")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(world.run_a, "ID") == missing.json()["detail"].replace(
        "20991231-000000-ffffff", "ID"
    )


def test_the_uis_files_and_sign_in_page_are_public_and_what_they_fetch_is_not(world: World) -> None:
    with world.client(None) as http:
        for path in ("/", "/ui/signin", "/ui/app.js", "/ui/signin.js", "/docs"):
            assert http.get(path).status_code == 200, path
        assert http.get("/api/v1/me").status_code == 401


def test_a_session_cookie_cannot_change_anything_from_another_web_site(world: World) -> None:
    with world.client(None) as http:
        signed = http.post("/api/v1/session", json={"token": world.tokens["member"]})
        assert signed.status_code == 200 and signed.json()["user"] == "member"
        cookie = signed.cookies["conveyor_session"]
        assert "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=strict" in signed.headers["set-cookie"].lower()
    with world.client(None) as http:
        http.cookies.set("conveyor_session", cookie)
        assert http.get("/api/v1/me").json()["user"] == "member"
        forged = http.post(f"/api/v1/runs/{world.run_a}/cancel", headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403 and "may not change anything" in forged.json()["detail"]
        assert http.post(f"/api/v1/runs/{world.run_a}/cancel").status_code == 200
        assert http.post("/api/v1/session/end").status_code == 204
        http.cookies.set("conveyor_session", cookie)
        assert http.get("/api/v1/me").status_code == 401  # the session was revoked


def test_the_python_client_sends_its_token(world: World, monkeypatch: Any) -> None:
    from conveyor import Client
    from conveyor.errors import Unauthenticated

    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(world.project.root / "no-config"))
    with_token = Client(world.url, token=world.tokens["other"])
    assert [r.id for r in with_token.runs()] == [world.run_b]
    monkeypatch.setenv("CONVEYOR_TOKEN", world.tokens["viewer"])
    assert world.run_a in {r.id for r in Client(world.url).runs()}
    monkeypatch.delenv("CONVEYOR_TOKEN")
    try:
        Client(world.url).runs()
    except Unauthenticated as exc:
        assert "set CONVEYOR_TOKEN or run conveyor login --server" in str(exc)
    else:
        raise AssertionError("a client without a token was let in")
