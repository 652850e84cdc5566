"""Signing in to the web UI in a real browser: a token traded for an HttpOnly, SameSite=Strict
session cookie; a viewer sees a run without the buttons that act; signing out ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from api.live import ServerProcess, make_project, start_server
from conftest import Project
from ui.conftest import WAIT, _need_chromium

V1 = "/api/v1"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str], str]]:
    """A server whose project is team a's, with an admin, a member and a viewer of team a, and
    a run of team a: (server, tokens by user, the run's id)."""
    _need_chromium()
    root = tmp_path_factory.mktemp("signin") / "project"
    root.mkdir()
    project = make_project(Project(root))
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\nteam = "a"\n')
    project.cli("teams", "add", "a", check=True)
    tokens = {}
    for name, role in (("root", None), ("mia", "member"), ("vic", "viewer")):
        project.cli("users", "add", name, *(["--admin"] if role is None else []), check=True)
        if role:
            project.cli("teams", "grant", "a", name, "--role", role, check=True)
        tokens[name] = project.cli("tokens", "create", name, check=True).stdout.strip()
    server = start_server(project, "--no-scheduler")
    with server.client(headers={"Authorization": f"Bearer {tokens['mia']}"}) as http:
        answer = http.post(f"{V1}/pipelines/quick/runs", json={"params": {"n": 2}})
        assert answer.status_code == 201, answer.text
        run_id = str(answer.json()["id"])
    yield server, tokens, run_id
    server.stop()


def _context(browser: Any, server: ServerProcess) -> Any:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT)
    return context


def _sign_in(page: Any, token: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/signin$"))  # not signed in: sent there
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_be_visible()


def test_a_token_signs_in_with_a_cookie_scripts_cannot_read_and_sign_out_ends_it(
    browser: Any, signed: tuple[ServerProcess, dict[str, str], str]
) -> None:
    server, tokens, _ = signed
    context = _context(browser, server)
    page = context.new_page()
    page.goto("/ui/signin")
    page.get_by_label("Token").fill("cvy_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#problem")).to_contain_text("unknown, expired or revoked")
    _sign_in(page, tokens["mia"])
    expect(page.locator("#who")).to_contain_text("mia")
    expect(page.get_by_role("button", name="Run quick…")).to_be_visible()
    (cookie,) = [c for c in context.cookies() if c["name"] == "conveyor_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["value"] != tokens["mia"] and cookie["value"].startswith("cvy_")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/signin$"))
    assert not [c for c in context.cookies() if c["name"] == "conveyor_session"]
    ended = httpx.get(f"{server.url}{V1}/runs", cookies={"conveyor_session": cookie["value"]}, timeout=30)
    assert ended.status_code == 401  # the session was revoked, not only forgotten
    context.close()


def test_a_viewer_sees_a_run_without_the_buttons_that_act(
    browser: Any, signed: tuple[ServerProcess, dict[str, str], str], tmp_path: Path
) -> None:
    server, tokens, run_id = signed
    context = _context(browser, server)
    page = context.new_page()
    _sign_in(page, tokens["vic"])
    page.goto(f"/#/runs/{run_id}")
    expect(page.locator("h1")).to_contain_text(run_id)
    expect(page.locator(".graph .node").first).to_be_visible()
    expect(page.get_by_role("button", name="⊘ Cancel run")).to_have_count(0)
    expect(page.get_by_role("button", name="↻ Retry failed tasks")).to_have_count(0)
    page.goto("/#/pipelines")
    expect(page.locator("h1")).to_have_text("Pipelines")
    expect(page.get_by_role("button", name="Run quick…")).to_have_count(0)  # no trigger
    page.goto("/#/audit")
    expect(page.locator("tr[data-action=trigger]")).to_have_count(1)
    context.close()
