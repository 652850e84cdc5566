"""The Run and Backfill forms: fields from the typed parameters, the API's messages by their fields,
and text that looks like markup shown as text everywhere it appears."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from api.live import ServerProcess, wait_for_run

V1 = "/api/v1"
HOSTILE = '<script>alert(1)</script><img src=x onerror="window.injected=1">'


def open_form(page: Any, label: str) -> Any:
    page.goto("/#/pipelines")
    page.get_by_role("button", name=label).click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    return dialog


def test_the_run_form_has_an_input_for_each_type_of_parameter(page: Any) -> None:
    dialog = open_form(page, "Run sales…")
    expect(dialog.locator("input[name=rows]")).to_have_attribute("type", "number")
    expect(dialog.locator("input[name=rows]")).to_have_attribute("aria-required", "true")
    expect(dialog.locator("label[for]").filter(has_text="rows")).to_contain_text("*")
    expect(dialog.locator("input[name=strict]")).to_have_attribute("type", "checkbox")
    expect(dialog.locator("input[name=strict]")).not_to_be_checked()
    expect(dialog.locator("input[name=day]")).to_have_attribute("type", "date")
    expect(dialog.locator("input[name=day]")).to_have_value("2026-11-01")
    colours = dialog.locator("select[name=colour] option")
    expect(colours).to_have_text(["— default —", "red", "green", "blue"])
    expect(dialog.locator("select[name=colour]")).to_have_value("green")
    expect(dialog.locator("input[name=note]")).to_have_value("nightly")
    expect(dialog.locator("input[name=rows]")).to_be_focused()  # the keyboard starts in the form
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)


def test_a_bad_parameter_shows_the_apis_message_by_its_field(
    page: Any, screenshot: Callable[..., Any]
) -> None:
    dialog = open_form(page, "Run sales…")
    rows = dialog.locator("input[name=rows]")
    rows.fill("2.5")
    dialog.get_by_role("button", name="Start run").click()
    error = dialog.locator(".field-error").filter(has_text="expected")
    expect(error).to_have_text("expected an integer, got '2.5'")
    expect(rows).to_have_attribute("aria-invalid", "true")
    assert rows.get_attribute("aria-describedby") == error.get_attribute("id")
    expect(rows).to_be_focused()
    expect(page).to_have_url(re.compile(r"#/pipelines$"))  # no run was started
    screenshot(dialog, "form-error")

    rows.fill("")
    dialog.get_by_role("button", name="Start run").click()
    expect(dialog.locator(".field-error:visible")).to_have_text(["missing: a int is required"])
    rows.fill("3")
    dialog.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"#/runs/"))


def test_a_backfill_starts_from_its_form_and_shows_its_progress(
    page: Any, ui_server: ServerProcess, screenshot: Callable[..., Any]
) -> None:
    dialog = open_form(page, "Backfill daily…")
    expect(dialog.locator("input[name=logical_date]")).to_have_count(0)  # the range gives it
    dialog.locator("input[name=start]").fill("2026-03-04")
    dialog.locator("input[name=end]").fill("2026-03-01")
    dialog.get_by_role("button", name="Start backfill").click()
    end = dialog.locator("input[name=end]")
    expect(end).to_have_attribute("aria-invalid", "true")
    expect(dialog.locator(f"#{end.get_attribute('aria-describedby')}")).to_have_text("before start")

    dialog.locator("input[name=start]").fill("2026-03-01")
    dialog.locator("input[name=end]").fill("2026-03-04")
    dialog.locator("input[name=max_parallel]").fill("2")
    dialog.get_by_role("button", name="Start backfill").click()
    expect(page).to_have_url(re.compile(r"#/backfills$"))
    row = page.locator("tr[data-backfill]").first
    expect(row).to_contain_text("2026-03-01 → 2026-03-04")
    expect(row.locator("progress")).to_have_attribute("max", "4")
    expect(row.locator(".progress-text")).to_have_text(" 4 of 4")
    expect(row.locator("td").nth(4)).to_have_text("✔ succeeded")
    row.locator("summary").click()
    expect(row.locator(".dates li")).to_have_count(4)
    expect(row.locator(".dates li a")).to_have_count(4)  # each date's run, a link
    expect(row.get_by_role("button", name=re.compile("Cancel backfill"))).to_be_disabled()
    screenshot(page, "backfills")


def test_a_parameter_that_looks_like_markup_is_shown_as_text(page: Any, ui_server: ServerProcess) -> None:
    dialog = open_form(page, "Run sales…")
    dialog.locator("input[name=rows]").fill("1")
    dialog.locator("input[name=note]").fill(HOSTILE)
    dialog.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"#/runs/"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("code[data-param=note]")).to_have_text(f"note = {HOSTILE}")
    report = page.locator(".graph .node").filter(has_text="report(")
    expect(report).to_have_attribute("data-state", "succeeded")
    report.click()
    panel = page.locator("aside.panel")
    expect(panel.locator("dl.params-list")).to_contain_text(HOSTILE)
    expect(panel.locator("pre.log-text")).to_contain_text(f"note: {HOSTILE}")

    page.goto("/#/runs?pipeline=sales")
    expect(page.locator(f"tr[data-run='{run_id}'] .params-cell")).to_contain_text(HOSTILE)
    assert page.locator("main script, main img, body > script").count() == 0
    assert page.evaluate("window.injected") is None
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["params"]["note"] == HOSTILE
    # and no dialog opened: the page fixture fails the test if one did
