"""Every answer says ``X-Content-Type-Options: nosniff`` (errors and refusals too), and the
interactive docs are served as the web UI is: its Content-Security-Policy and framing rule, and
no inline script."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live import in_thread

from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store
from conveyor.ui import POLICY

V1 = "/api/v1"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    app = create_app(Service(store), max_body=1024)
    with in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield client
    store.close()


def _directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


def test_the_docs_pages_have_the_uis_policy_and_no_inline_script(http: httpx.Client) -> None:
    docs = http.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert docs.headers["content-security-policy"] == POLICY
    redoc = http.get("/redoc")
    policy = _directives(redoc.headers["content-security-policy"])
    nonce = re.search(r'data-nonce="([^"]+)"', redoc.text)
    assert nonce and policy["style-src"] == f"style-src 'self' 'nonce-{nonce.group(1)}'"  # ReDoc's styles
    assert policy["worker-src"] == "worker-src blob:"  # its search
    ui = _directives(POLICY)
    for name in ("default-src", "script-src", "frame-ancestors", "object-src", "base-uri", "connect-src"):
        assert policy[name] == ui[name]
    assert http.get("/redoc").headers["content-security-policy"] != redoc.headers["content-security-policy"]
    for page in (docs, redoc):
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        scripts = re.findall(r"<script([^>]*)>", page.text)
        assert scripts and all('src="/' in attrs for attrs in scripts), scripts  # every one a file
        assert "<style" not in page.text and " style=" not in page.text
        for src in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            asset = http.get(src)
            assert asset.status_code == 200, src
            assert asset.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/openapi.json", 200),
        ("GET", f"{V1}/pipelines", 200),
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", f"{V1}/runs/nope", 404),
        ("GET", f"{V1}/runs?limit=0", 422),
        ("DELETE", f"{V1}/pipelines", 405),
        ("GET", "/nowhere", 404),
        ("POST", f"{V1}/pipelines/x/runs", 413),  # the body limit's own answer
        ("POST", f"{V1}/runs/x/cancel", 403),  # refused as cross-site, before the app
    ],
)
def test_every_answer_says_nosniff(http: httpx.Client, method: str, path: str, status: int) -> None:
    headers = {"Origin": "https://evil.example"} if status == 403 else {}
    body = b"{" + b" " * 2000 + b"}" if status == 413 else None
    answer = http.request(method, path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"
