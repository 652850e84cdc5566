"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright, against a real
``conveyor server`` on a loopback port with the UI tests' project (``project.py``).

Without /usr/bin/chromium the tests skip, saying how to install it; with ``CI=true`` they fail
instead. Screenshots go to a temporary directory, and also to docs/images/ when
``CONVEYOR_SCREENSHOTS=docs`` is set.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from api.live import ServerProcess, start_server
from conftest import Project
from ui.project import make_ui_project

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
#: The screenshots docs/ui.md and the README show (the others stay in the temporary directory).
DOCS_SHOTS = {"pipelines", "run", "run-following", "form-error", "run-grouped", "notebook"}

#: How long an expectation waits (ms): a run goes through a scheduler child.
WAIT = 30_000


def _need_chromium() -> None:
    missing = ""
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        message = f"the UI tests need Debian's Chromium and Playwright: {missing}; apt-get install chromium"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``conveyor server`` for the UI tests: their project, two workers."""
    _need_chromium()  # no server to start when the tests cannot run
    root = tmp_path_factory.mktemp("ui") / "project"
    root.mkdir()
    server = start_server(make_ui_project(Project(root)), "--workers", "2")
    yield server
    server.stop()


@dataclass
class Seen:
    """What the page did besides what a test looks at: script errors and dialogs."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(
    browser: Any, ui_server: ServerProcess, request: pytest.FixtureRequest, shots: Path
) -> Iterator[Any]:
    """A fresh browser page on the server; a script error or a JS dialog fails the test."""
    context = browser.new_context(base_url=ui_server.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(WAIT)
    page = context.new_page()
    seen = Seen()
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))

    def dialog(d: Any) -> None:
        seen.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.seen = seen
    try:
        yield page
    finally:
        if getattr(request.node, "failed", False):
            page.screenshot(path=str(shots / f"FAILED-{request.node.name}.png"), full_page=True)
        context.close()
    assert not seen.errors, f"script errors on the page: {seen.errors}"
    assert not seen.dialogs, f"the page opened dialogs: {seen.dialogs}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True  # type: ignore[attr-defined]
    return report


@pytest.fixture
def screenshot(shots: Path) -> Callable[..., Path]:
    """``screenshot(page_or_element, "name")``: a PNG in the temporary directory, and, for the
    names in DOCS_SHOTS, in docs/images/ui-NAME.png with CONVEYOR_SCREENSHOTS=docs."""

    def take(target: Any, name: str, full_page: bool = False) -> Path:
        assert re.fullmatch(r"[a-z0-9-]+", name)
        path = shots / f"ui-{name}.png"
        options: dict[str, Any] = {"path": str(path), "animations": "disabled"}
        if full_page:
            options["full_page"] = True
        target.screenshot(**options)
        if os.environ.get("CONVEYOR_SCREENSHOTS") == "docs" and name in DOCS_SHOTS:
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            (DOCS_IMAGES / path.name).write_bytes(_small(path.read_bytes()))
        return path

    return take


def _small(png: bytes) -> bytes:
    """A screenshot in 256 colours (a third of the size; UI pictures lose nothing one can see),
    if Pillow is there (matplotlib brings it)."""
    try:
        from PIL import Image
    except ImportError:
        return png
    out = io.BytesIO()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, "PNG", optimize=True
    )
    return out.getvalue()
