"""What the security limits look like in a browser: the runs page shows a long parameter's preview
(lists carry summaries) and the run's page shows it whole; /docs and /redoc work under a policy
that allows this server's scripts only."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from api.live import ServerProcess, wait_for_run

V1 = "/api/v1"


def test_the_runs_page_shows_a_long_parameters_preview_and_the_run_page_shows_it_whole(
    page: Any, ui_server: ServerProcess
) -> None:
    note = "n" + "o" * 3000 + "te"
    with ui_server.client() as http:
        answer = http.post(f"{V1}/pipelines/sales/runs", json={"params": {"rows": 1, "note": note}})
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
    page.goto("/#/runs?pipeline=sales")
    cell = page.locator(f"tr[data-run='{run_id}'] td.params-cell")
    expect(cell).to_contain_text("note=noooo")
    text = cell.text_content()
    assert "…" in text and len(text) < 400 and "te" not in text.split("note=")[1]
    page.goto(f"/#/runs/{run_id}")
    expect(page.locator(".chip[data-param=note]")).to_have_text(f"note = {note}")
    with ui_server.client() as http:
        wait_for_run(http, run_id)  # its workers free for the next tests


def _console(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if m.type == "error" else None)
    return seen


def test_swagger_ui_works_under_the_uis_policy(page: Any) -> None:
    errors = _console(page)
    answer = page.goto("/docs")
    assert "script-src 'self';" in answer.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible()
    expect(
        page.locator(".opblock-summary-path").filter(has_text="/api/v1/runs/{run_id}/logs")
    ).to_be_visible()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_redoc_works_under_the_policy_with_its_nonce(page: Any) -> None:
    errors = _console(page)
    answer = page.goto("/redoc")
    assert "script-src 'self';" in answer.headers["content-security-policy"]
    expect(page.locator("[data-section-id]").first).to_be_attached()
    page.fill("input[placeholder='Search...']", "backfill")
    results = page.locator("[data-role='search:results'] li")  # its search runs in a worker
    expect(results.filter(has_text="Cancel a backfill")).to_have_count(1)
    assert not [e for e in errors if "script-src" in e], errors
