"""How the UI is served (no browser needed): the page and its files from the package, with a
policy that runs only this server's scripts, outside the API's schema; and scripts that never
turn data into HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.live import in_thread
from conveyor.api import create_app, openapi_schema
from conveyor.service import Service
from conveyor.store import open_store
from conveyor.ui import STATIC
from ui import conftest as ui_conftest


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with in_thread(create_app(Service(store))) as url, httpx.Client(base_url=url) as http:
        yield http
    store.close()


def test_the_page_and_its_files_are_served_with_a_policy_that_runs_only_this_servers_scripts(
    client: httpx.Client,
) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r'src="(/ui/[^"]+)"', page.text) + re.findall(r'href="(/ui/[^"]+)"', page.text)
    assert sorted(scripts) == ["/ui/app.js", "/ui/style.css"]
    for path in scripts:
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-security-policy"] == policy
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/nope.js").status_code == 404
    assert client.get("/ui/%2e%2e/__init__.py").status_code == 404  # nothing outside static/


def test_every_module_the_scripts_import_is_served(client: httpx.Client) -> None:
    for script in STATIC.glob("*.js"):
        for name in re.findall(r'from "\./([\w.]+)"', script.read_text()):
            assert (STATIC / name).is_file(), f"{script.name} imports {name}, which is missing"
            assert client.get(f"/ui/{name}").status_code == 200


def test_the_ui_is_not_in_the_apis_schema(client: httpx.Client) -> None:
    served = client.get("/openapi.json").json()["paths"]
    assert served == openapi_schema()["paths"]
    assert not [p for p in served if p == "/" or p.startswith("/ui")]


def test_the_scripts_never_write_html_from_data() -> None:
    """The DOM is built with textContent and createElement: no API that parses HTML appears."""
    parsing = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|srcdoc"
    )
    for script in STATIC.glob("*.js"):
        found = parsing.findall(script.read_text())
        assert not found, f"{script.name} uses {found}"


def test_without_chromium_the_browser_tests_skip_locally_and_fail_on_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ui_conftest, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        ui_conftest._need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        ui_conftest._need_chromium()
