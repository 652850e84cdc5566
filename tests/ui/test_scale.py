"""At scale: a run of 2,002 task instances drawn grouped (and, when asked, one node each), updated
from small changes while it runs; the runs page with 10,000 runs stored."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from api.live import ServerProcess, start_server, wait_for_run
from conftest import Project
from conveyor.store import open_store
from conveyor.store.records import InstanceRecord, RunRecord
from ui.conftest import _need_chromium
from ui.project import make_ui_project

V1 = "/api/v1"
STORED = 10_000

#: How long until the page draws its next frame (ms).
FRAME = """() => new Promise((done) => {
    const start = performance.now();
    requestAnimationFrame(() => done(performance.now() - start));
})"""


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose store already holds 10,000 ended runs of an `archive` pipeline."""
    _need_chromium()
    root = tmp_path_factory.mktemp("big") / "project"
    root.mkdir()
    project = make_ui_project(Project(root))
    store = open_store(project.db)
    start = time.time() - STORED * 60
    for i in range(STORED):
        run_id, state = f"20250101-000000-{i:06x}", "failed" if i % 10 == 0 else "succeeded"
        created = start + i * 60
        run = RunRecord(
            id=run_id,
            pipeline="archive",
            target="archive.py:archive",
            params={"i": i},
            key=run_id,
            state=state,
            created_at=created,
            started_at=created + 1,
            ended_at=created + 3,
            total=1,
            counts={state: 1},
        )
        work = InstanceRecord(
            run_id=run_id,
            id=f"{i:016x}",
            task="work",
            label=f"work(i={i})",
            params={"i": i},
            upstream=[],
            state=state,
        )
        store.create_run(run, [work])
    store.close()
    server = start_server(project, "--workers", "2")
    yield server
    server.stop()


@pytest.fixture
def big_page(browser: Any, big_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=big_server.url, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def timed(action: Callable[[], Any]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def test_the_runs_page_stays_fast_with_10000_runs_stored(big_page: Any) -> None:
    page = big_page
    rows = page.locator("tr[data-run]")
    first = timed(lambda: (page.goto("/#/runs"), expect(rows).to_have_count(50)))
    expect(page.locator(".pager .range")).to_have_text(f"1–50 of {STORED:,}")
    deep = timed(
        lambda: (
            page.goto("/#/runs?offset=9000"),
            expect(page.locator(".pager .range")).to_have_text(f"9,001–9,050 of {STORED:,}"),
        )
    )
    failed = timed(
        lambda: (
            page.locator("#f-state").select_option("failed"),
            expect(page.locator(".pager .range")).to_have_text(f"1–50 of {STORED // 10:,}"),
        )
    )
    page.goto("/#/runs?limit=200")
    expect(rows).to_have_count(200)
    assert max(first, deep, failed) < 3, (first, deep, failed)


def test_a_run_of_2000_instances_is_grouped_updated_in_place_and_stays_responsive(
    big_page: Any, big_server: ServerProcess, screenshot: Callable[..., Any]
) -> None:
    page = big_page
    graphs: list[str] = []  # the graph's requests
    changes: list[int] = []  # the sizes of the changes' answers

    def seen(response: Any) -> None:
        if re.search(r"/api/v1/runs/[^/]+/graph", response.url):
            graphs.append(response.url)
        elif "/changes?since=" in response.url and "since=0" not in response.url:
            changes.append(len(response.body()))

    page.on("response", seen)
    with big_server.client() as http:
        run_id = http.post(f"{V1}/pipelines/wide/runs", json={}).json()["id"]
    with page.expect_response(re.compile(r"/api/v1/runs/.*/graph")) as graph:
        page.goto(f"/#/runs/{run_id}")
    assert graph.value.json()["run"]["state"] in ("pending", "running")  # what follows came as changes
    nodes = page.locator(".graph .node")
    expect(nodes).to_have_count(3)  # prepare, cell (2,000), gather
    cell = nodes.filter(has_text="cell")
    expect(cell).to_contain_text("cell (2,000)")
    expect(cell).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(cell).to_contain_text("✔2,000")
    expect(page.locator("h1 .run-state")).to_have_text("✔ succeeded")
    assert len(graphs) == 1, graphs  # the graph came once; the rest were changes
    assert changes and max(changes) < 400_000, changes

    zoom = page.locator(".zoom-level")
    before = zoom.text_content()
    page.locator("svg.graph").focus()
    page.keyboard.press("+")
    expect(zoom).not_to_have_text(before or "")
    page.keyboard.press("0")
    expect(zoom).to_have_text(before or "")
    cell.click()
    panel = page.locator("aside.panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text("cell × 2,000")
    expect(panel.locator(".instances li")).to_have_count(200)
    screenshot(page, "run-grouped")

    # One node per instance: 2,002 nodes, drawn, and still panned and zoomed.
    took = timed(
        lambda: (
            page.locator("#grouping").select_option("instances"),
            expect(nodes).to_have_count(2002),
        )
    )
    assert took < 10, took
    expect(page).to_have_url(re.compile(r"\?group=instances$"))
    svg = page.locator("svg.graph")
    transform = page.locator("svg.graph .viewport").get_attribute("transform")
    box = svg.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -600)
    expect(page.locator("svg.graph .viewport")).not_to_have_attribute("transform", transform or "")
    assert page.evaluate(FRAME) < 1000  # the page still draws a frame promptly
    zoomed = page.locator("svg.graph .viewport").get_attribute("transform")
    page.mouse.down()
    page.mouse.move(box["x"] + 100, box["y"] + 100, steps=5)  # a drag pans
    page.mouse.up()
    expect(page.locator("svg.graph .viewport")).not_to_have_attribute("transform", zoomed or "")
    first = nodes.first
    first.focus()
    page.keyboard.press("Enter")
    expect(panel.get_by_role("heading", level=2)).to_have_text(re.compile(r"^prepare\(n=2000\)"))
    with big_server.client() as http:
        assert wait_for_run(http, run_id)["state"] == "succeeded"
