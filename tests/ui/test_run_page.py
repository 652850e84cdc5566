"""A run from the browser: started from its form, its graph turning to succeeded without a reload,
a task's panel and log, a slow run's log followed and the run cancelled, a failed run's error."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from api.live import ServerProcess, wait_for_run, wait_until

V1 = "/api/v1"
RUN_URL = re.compile(r"#/runs/(\d{8}-\d{6}-[0-9a-f]{6})$")


def trigger(server: ServerProcess, name: str, **params: Any) -> str:
    with server.client() as http:
        answer = http.post(f"{V1}/pipelines/{name}/runs", json={"params": params})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def node(page: Any, label_start: str) -> Any:
    """The graph's node whose label starts so (SVG text is the node's text)."""
    return page.locator(".graph .node").filter(has_text=re.compile("^" + re.escape(label_start)))


def test_a_run_started_from_its_form_turns_to_succeeded_in_the_graph_without_a_reload(
    page: Any, ui_server: ServerProcess, screenshot: Callable[..., Any]
) -> None:
    page.goto("/#/pipelines")
    page.get_by_role("button", name="Run sales…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading", name="Run sales")).to_be_visible()
    dialog.locator("input[name=rows]").fill("4")
    dialog.locator("input[name=strict]").check()
    dialog.locator("input[name=day]").fill("2026-11-05")
    dialog.locator("select[name=colour]").select_option("blue")
    dialog.locator("input[name=note]").fill("from the browser")
    page.evaluate("window.stillThisPage = true")
    with page.expect_response(re.compile(r"/graph")) as graph:
        dialog.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(RUN_URL)
    first = graph.value.json()
    run_id = RUN_URL.search(page.url).group(1)  # type: ignore[union-attr]
    assert first["run"]["id"] == run_id and first["run"]["state"] in ("pending", "running")

    nodes = page.locator(".graph .node")
    expect(nodes).to_have_count(8)
    for i in range(8):
        expect(nodes.nth(i)).to_have_attribute("data-state", "succeeded")
    expect(page.locator("h1 .run-state")).to_have_text("✔ succeeded")
    expect(node(page, "report(")).to_have_attribute("aria-label", re.compile(r": succeeded$"))
    assert page.evaluate("window.stillThisPage") is True  # updated in place, not reloaded
    expect(page.get_by_role("button", name="⊘ Cancel run")).to_be_disabled()
    expect(page.locator(".timeline svg.gantt .bar")).to_have_count(8)

    with ui_server.client() as http:
        run = http.get(f"{V1}/runs/{run_id}").json()
    assert run["params"] == {
        "rows": 4,
        "strict": True,
        "day": "2026-11-05",
        "colour": "blue",
        "note": "from the browser",
    }

    # The task panel, opened from the keyboard: its parameters, attempt and log.
    report = node(page, "report(")
    report.focus()
    page.keyboard.press("Enter")
    panel = page.locator("aside.panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text(re.compile(r"^report\(total=<"))
    expect(panel.locator("dl.params-list")).to_contain_text("colour")
    expect(panel.locator("dl.params-list")).to_contain_text("← merge(")
    expect(panel.locator("table")).to_contain_text("✔ succeeded")
    expect(panel.locator("pre.log-text")).to_have_text("report in blue: 12 rows; note: from the browser\n")
    expect(page.locator(".timeline svg.gantt")).to_be_visible()
    screenshot(page, "run", full_page=True)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(report).to_be_focused()


def test_a_slow_runs_log_is_followed_and_the_run_is_cancelled_from_its_page(
    page: Any, ui_server: ServerProcess, screenshot: Callable[..., Any]
) -> None:
    run_id = trigger(ui_server, "slow")
    page.goto(f"/#/runs/{run_id}")
    nap = node(page, "nap(")
    expect(nap).to_have_attribute("data-state", "running")
    retry = page.get_by_role("button", name="↻ Retry failed tasks")
    expect(retry).to_be_disabled()
    nap.click()
    panel = page.locator("aside.panel")
    expect(panel.locator(".following")).to_have_text(re.compile("Following the log"))
    log = panel.locator("pre.log-text")
    expect(log).to_contain_text("tick 3")
    expect(log).to_contain_text("tick 8")  # it grows while the task runs
    screenshot(page, "run-following")

    page.get_by_role("button", name="⊘ Cancel run").click()
    expect(page.locator(".run-actions .status")).to_contain_text("Cancel requested")
    expect(nap).to_have_attribute("data-state", "cancelled", timeout=20_000)
    expect(page.locator("h1 .run-state")).to_have_text("⊘ cancelled")
    expect(page.get_by_role("button", name="⊘ Cancel run")).to_be_disabled()
    expect(retry).to_be_enabled()
    expect(panel.locator(".badge").first).to_have_text("⊘ cancelled")
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "cancelled"


def test_a_failed_run_says_why_and_is_retried_from_its_page(page: Any, ui_server: ServerProcess) -> None:
    run_id = trigger(ui_server, "broken", table="<i>orders</i>")
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "failed"
    page.goto(f"/#/runs/{run_id}")
    why = page.locator(".run-meta .error-box")
    expect(why).to_contain_text("ValueError: table '<i>orders</i>' is locked by <b>another</b> job")
    expect(node(page, "load(")).to_have_attribute("data-state", "failed")
    expect(node(page, "load(")).to_contain_text("✘")
    node(page, "load(").click()
    panel = page.locator("aside.panel")
    expect(panel.locator("table tbody tr")).to_have_count(2)  # two attempts: retries=1
    expect(panel.locator("details.log")).to_have_count(2)
    expect(panel.locator("details.log[open] pre")).to_contain_text("loading <i>orders</i>")
    assert page.locator("main i, main b").count() == 0  # the markup is text, not elements

    page.get_by_role("button", name="↻ Retry failed tasks").click()
    expect(page.locator(".run-actions .status")).to_contain_text("Retry requested")
    with httpx.Client(base_url=ui_server.url) as http:
        wait_for_run(http, run_id)
    expect(node(page, "load(")).to_have_attribute("data-state", "failed")
    expect(panel.locator("table tbody tr")).to_have_count(4)  # the retry's two attempts too


def test_a_task_that_waited_for_another_run_says_so_in_its_panel(page: Any, ui_server: ServerProcess) -> None:
    runs = [trigger(ui_server, "slow", seconds=2), trigger(ui_server, "rest", seconds=2)]
    with ui_server.client() as http:
        ended = [wait_for_run(http, run_id) for run_id in runs]
    assert [run["state"] for run in ended] == ["succeeded", "succeeded"]
    # Whichever run's worker began first executed the nap; the other took its outcome.
    waited = [run["id"] for run in ended if any(task["waited_for"] for task in run["tasks"])]
    assert len(waited) == 1, ended
    waiter = waited[0]
    executor = runs[1] if waiter == runs[0] else runs[0]
    page.goto(f"/#/runs/{waiter}")
    node(page, "nap(").click()
    panel = page.locator("aside.panel")
    expect(panel.locator(".waited")).to_contain_text(f"Waited for run {executor}")
    panel.locator(".waited a").click()
    expect(page).to_have_url(re.compile(f"#/runs/{executor}$"))
    page.goto(f"/#/runs/{executor}")
    node(page, "nap(").click()
    expect(panel.locator("h3", has_text="Log")).to_be_visible()
    expect(panel.locator(".waited")).to_have_count(0)  # this run napped itself


def test_the_attempts_table_says_where_an_engine_has_the_attempt(page: Any, ui_server: ServerProcess) -> None:
    from conveyor.store import open_store

    run_id = trigger(ui_server, "slow")
    with ui_server.client() as http:
        run = wait_until(
            lambda: (
                (r := http.get(f"{V1}/runs/{run_id}").json())["state"] == "running"
                and any(t["attempts"] for t in r["tasks"])
                and r
            ),
            what="the slow run's attempt",
        )
        (task,) = [t for t in run["tasks"] if t["attempts"]]
        # what a batch engine's executor records (``Placed``): here written as the driver would
        store = open_store(f"sqlite:///{run['workdir']}/.conveyor/conveyor.db")
        store.place_attempt(run_id, task["id"], 1, "queued in Kueue (team-a): waiting for quota")
        store.close()
        page.goto(f"/#/runs/{run_id}")
        node(page, "nap(").click()
        where = page.locator("aside.panel table tbody tr td.where")
        expect(where).to_have_text("queued in Kueue (team-a): waiting for quota")
        assert http.post(f"{V1}/runs/{run_id}/cancel").status_code == 200
        wait_for_run(http, run_id)


def test_the_task_panel_shows_what_a_table_and_a_file_target_hold(
    page: Any, ui_server: ServerProcess
) -> None:
    run_id = trigger(ui_server, "warehouse", rows=1500)
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "succeeded"
    exported = ui_server.log_path.parent / "exports" / "sales-2026-11-01.csv"
    sha = hashlib.sha256(exported.read_bytes()).hexdigest()
    page.goto(f"/#/runs/{run_id}")
    panel = page.locator("aside.panel")
    node(page, "ingest(").click()
    target = panel.locator("ul.targets li")
    expect(target).to_contain_text("sales[day=2026-11-01] in sqlite:///warehouse.db")
    expect(target.locator(".held")).to_have_text(" — partition day=2026-11-01 · 1,500 rows")
    node(page, "export(").click()
    expect(target).to_contain_text("exports/sales-2026-11-01.csv")
    size = f"{exported.stat().st_size / 1024:.1f} KiB"
    expect(target.locator(".held")).to_contain_text(f"{size} · sha256 {sha[:12]}…")
    expect(target.locator(".held [title]")).to_have_attribute("title", f"SHA-256 {sha}")


def test_a_waiting_task_says_why_in_its_panel(page: Any, ui_server: ServerProcess) -> None:
    run_id = trigger(ui_server, "chain", seconds=4)
    page.goto(f"/#/runs/{run_id}")
    node(page, "after(").click()
    why = page.locator("aside.panel .why")
    expect(why).to_have_attribute("data-kind", "upstream")
    expect(why).to_contain_text(re.compile(r"Why it waits: waiting for upstream pause\("))
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "succeeded"
    expect(node(page, "after(")).to_have_attribute("data-state", "succeeded", timeout=10_000)
    node(page, "pause(").click()
    node(page, "after(").click()
    expect(page.locator("aside.panel .why")).to_have_count(0)  # done: it waits for nothing


def test_a_notebook_tasks_panel_shows_it_rendered_and_none_of_its_scripts_runs(
    page: Any, ui_server: ServerProcess, screenshot: Callable[..., Any]
) -> None:
    run_id = trigger(ui_server, "analyse", n=4)
    with ui_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "succeeded"
    page.goto(f"/#/runs/{run_id}")
    node(page, "analysis(").click()
    panel = page.locator("aside.panel")
    expect(panel.get_by_role("heading", name="Notebook", exact=True)).to_be_visible()
    expect(panel.locator("iframe.notebook-frame")).to_have_attribute("sandbox", "")
    frame = page.frame_locator("aside.panel iframe.notebook-frame")
    expect(frame.locator("body")).to_contain_text("total 100")  # the notebook's output, rendered
    expect(frame.locator("td").last).to_have_text("4")
    # its script did not run: neither in its own page nor, through it, in the UI's
    expect(frame.locator("body")).not_to_have_attribute("data-ran", "yes")
    assert "notebook script ran" not in page.title()
    (rendered,) = [f for f in page.frames if "/notebook?" in f.url]
    assert rendered.evaluate("() => self.origin") == "null"  # an opaque origin, not Conveyor's
    screenshot(panel, "notebook")
