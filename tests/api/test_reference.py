"""docs/api.md is the reference rendered from the API's OpenAPI schema, and is current;
docs/server.md names every option of ``conveyor server``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conveyor.api import openapi_schema
from conveyor.api.reference import render

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_api_md_is_the_current_reference() -> None:
    expected = render(openapi_schema())
    written = (DOCS / "api.md").read_text()
    assert written == expected, (
        "docs/api.md is out of date with the API; regenerate it with:\n"
        "    python -m conveyor.api.reference > docs/api.md"
    )


def test_the_reference_shows_every_route_its_parameters_and_errors() -> None:
    schema = openapi_schema()
    text = render(schema)
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            assert f"`{method.upper()} {path}`" in text
            assert op["summary"] in text
            for p in op.get("parameters", []):
                assert f"| `{p['name']}` | {p['in']} |" in text
    for name in ("params", "max_parallel", "every", "start", "end"):
        assert f"| `{name}` |" in text.split("### BackfillRequest", 1)[1]
    for status in ("404", "409", "413", "422", "503"):
        assert f"| {status} |" in text


def test_the_reference_is_what_the_module_prints() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conveyor.api.reference"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout == render(openapi_schema())


def test_docs_server_md_names_every_option_of_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    options = set(re.findall(r"(--[a-z][a-z-]+)", out.stdout)) - {"--help"}
    assert {"--host", "--port", "--db", "--project", "--workers", "--no-scheduler", "--max-body"} <= options
    text = (DOCS / "server.md").read_text()
    missing = sorted(o for o in options if f"`{o}" not in text)
    assert not missing, f"docs/server.md does not describe: {', '.join(missing)}"
