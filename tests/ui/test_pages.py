"""The list pages in a browser: pipelines, runs (filters, pages), schedules (pause, resume),
schedulers (heartbeats, leases), and getting around with the keyboard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from api.live import ServerProcess, wait_for_run, wait_until

V1 = "/api/v1"


@pytest.fixture(scope="module")
def tally_runs(ui_server: ServerProcess) -> list[str]:
    """Seven ended runs of `tally`, newest first."""
    with ui_server.client() as http:
        ids = []
        for k in range(7):
            answer = http.post(f"{V1}/pipelines/tally/runs", json={"params": {"k": k}})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        for run_id in ids:
            assert wait_for_run(http, run_id)["state"] == "succeeded"
    return ids[::-1]


def test_the_pipelines_page_shows_each_pipeline_its_schedule_and_its_recent_runs(
    page: Any, ui_server: ServerProcess, tally_runs: list[str], screenshot: Callable[..., Any]
) -> None:
    with ui_server.client() as http:
        failed = http.post(f"{V1}/pipelines/broken/runs", json={}).json()["id"]
        assert wait_for_run(http, failed)["state"] == "failed"
    page.goto("/")
    rows = page.locator("tr[data-pipeline]")
    expect(rows).to_have_count(11)
    tally = page.locator("tr[data-pipeline=tally]")
    expect(tally.locator(".recent a.dot")).to_have_count(7)
    expect(tally.locator(".recent a.dot").first).to_have_attribute(
        "aria-label", f"run {tally_runs[0]}: succeeded"
    )
    expect(tally.locator(".recent a.dot").first).to_have_text("✔")
    daily = page.locator("tr[data-pipeline=daily]")
    broken = page.locator("tr[data-pipeline=broken] .recent a.dot").first
    expect(broken).to_have_text("✘")
    expect(broken).to_have_attribute("aria-label", f"run {failed}: failed")
    expect(page.locator("tr[data-pipeline=nightly]")).to_contain_text("0 3 * * * UTC")
    expect(page.locator("tr[data-pipeline=sales]")).to_contain_text("rows: int (required)")
    expect(daily.get_by_role("button", name="Backfill daily…")).to_be_visible()
    expect(
        page.locator("tr[data-pipeline=sales]").get_by_role("button", name=re.compile("Backfill"))
    ).to_have_count(0)
    expect(page.locator("#health")).to_contain_text("store ok")
    screenshot(page, "pipelines")
    tally.locator(".recent a.dot").first.click()
    expect(page).to_have_url(re.compile(f"#/runs/{tally_runs[0]}$"))


def test_the_runs_page_filters_and_pages(page: Any, tally_runs: list[str]) -> None:
    page.goto("/#/runs?pipeline=tally&limit=5")
    rows = page.locator("tr[data-run]")
    expect(rows).to_have_count(5)
    expect(page.locator(".pager .range")).to_have_text("1–5 of 7")
    assert [rows.nth(i).get_attribute("data-run") for i in range(5)] == tally_runs[:5]  # newest first
    newer = page.get_by_role("button", name="← Newer")
    older = page.get_by_role("button", name="Older →")
    expect(newer).to_be_disabled()
    older.click()
    expect(page.locator(".pager .range")).to_have_text("6–7 of 7")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-run") for i in range(2)] == tally_runs[5:]
    expect(older).to_be_disabled()
    newer.click()
    expect(page.locator(".pager .range")).to_have_text("1–5 of 7")

    page.locator("#f-state").select_option("failed")  # a filter applies when it changes
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(page.locator(".results")).to_contain_text("No runs match these filters.")
    page.locator("#f-state").select_option("succeeded")
    expect(page.locator(".pager .range")).to_have_text("1–5 of 7")
    page.locator("#f-since").fill("2099-01-01")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".results")).to_contain_text("No runs match these filters.")
    page.locator("#f-since").fill("2000-01-01")
    page.locator("#f-pipeline").select_option("")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".pager .range")).to_contain_text("1–5 of")
    expect(page.locator("#f-pipeline")).to_have_value("")
    for state in page.locator("tr[data-run] td:nth-child(3)").all_text_contents():
        assert state.startswith("✔ succeeded")


def test_a_schedule_is_paused_and_resumed(page: Any, ui_server: ServerProcess) -> None:
    page.goto("/#/schedules")
    row = page.locator("tr[data-schedule=nightly]")
    expect(row).to_contain_text("⏵ active")
    row.get_by_role("button", name="Pause the schedule of nightly").click()
    expect(row).to_contain_text("⏸ paused")
    expect(row.get_by_role("button", name="Resume the schedule of nightly")).to_have_text("⏵ Resume")
    with ui_server.client() as http:
        assert http.get(f"{V1}/schedules").json()[0]["paused"] is True
    page.reload()
    expect(row).to_contain_text("— (paused)")
    row.get_by_role("button", name="Resume the schedule of nightly").click()
    expect(row).to_contain_text("⏵ active")
    with ui_server.client() as http:
        assert http.get(f"{V1}/schedules").json()[0]["paused"] is False


@pytest.fixture
def second_scheduler(ui_server: ServerProcess, tmp_path: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Another ``conveyor scheduler`` on the server's store."""
    root = ui_server.log_path.parent
    env = dict(os.environ, CONVEYOR_HOME=str(root / ".conveyor"))
    env.pop("CONVEYOR_DB", None)
    with open(tmp_path / "second.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "scheduler", "--name", "second", "--workers", "1"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_the_schedulers_page_shows_each_scheduler_its_heartbeat_and_leases(
    page: Any, ui_server: ServerProcess, second_scheduler: Any, screenshot: Callable[..., Any]
) -> None:
    with ui_server.client() as http:
        wait_until(lambda: len(http.get(f"{V1}/schedulers").json()) >= 2, what="the second scheduler")
        run_id = http.post(f"{V1}/pipelines/slow/runs", json={"params": {"seconds": 30}}).json()["id"]
        wait_until(lambda: http.get(f"{V1}/runs/{run_id}").json()["state"] == "running", what="the slow run")
    try:
        page.goto("/#/schedulers")
        rows = page.locator("tr[data-scheduler]")
        expect(rows).to_have_count(2)
        expect(page.locator("tr[data-scheduler=second]")).to_contain_text("▶ running")
        for i in range(2):
            expect(rows.nth(i).locator("td").nth(2)).to_contain_text(re.compile(r"s ago"))
        lease = page.locator(f"tr[data-scheduler] .leases a[href='#/runs/{run_id}']")
        expect(lease).to_have_count(1)
        expect(lease.locator("xpath=..")).to_contain_text("partition 0, epoch 1")
        screenshot(page, "schedulers")
    finally:
        with ui_server.client() as http:
            http.post(f"{V1}/runs/{run_id}/cancel")
            wait_for_run(http, run_id)


def test_the_pages_are_reached_with_the_keyboard(page: Any) -> None:
    page.goto("/")
    expect(page.locator("tr[data-pipeline]").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("#skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"/$"))  # the skip link moved the focus, not the route
    page.locator("#nav a", has_text="Runs").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/runs$"))
    expect(page.get_by_role("heading", name="Runs", level=1)).to_be_focused()
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Runs")
    page.goto("/#/pipelines")
    run = page.get_by_role("button", name="Run daily…")
    run.focus()
    page.keyboard.press("Enter")
    expect(page.locator("dialog[open]")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
