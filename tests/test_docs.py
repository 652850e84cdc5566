"""Every CLI command and option is documented in docs/cli.md; the docs' code blocks are closed;
the examples marked as runnable run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from conveyor.cli.app import app

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def commands() -> list[tuple[str, Any]]:
    root: Any = typer.main.get_command(app)
    out: list[tuple[str, Any]] = []
    for name, cmd in root.commands.items():
        if hasattr(cmd, "commands"):
            out += [(f"{name} {sub}", subcmd) for sub, subcmd in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


@pytest.mark.parametrize("name, command", commands(), ids=[n for n, _ in commands()])
def test_every_command_and_option_is_documented(name: str, command: Any) -> None:
    text = DOCS.read_text()
    assert f"conveyor {name}" in text, f"docs/cli.md does not document `conveyor {name}`"
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and opt != "--help":
                assert opt in text, f"docs/cli.md does not document {opt} of `conveyor {name}`"


PAGES = sorted([*DOCS.parent.glob("*.md"), DOCS.parent.parent / "README.md"])


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_code_block_is_closed(page: Path) -> None:
    """An unclosed ``` turns the rest of a page inside out: prose as code, code as prose."""
    fences = [n for n, line in enumerate(page.read_text().splitlines(), 1) if line.startswith("```")]
    assert len(fences) % 2 == 0, f"{page.name}: a code block opened at line {fences[-1]} is never closed"


# -- examples that claim to run ----------------------------------------------------------------------
#: ``<!-- docs-test: write FILE -->`` before a code block: the page's example project has that file.
#: ``<!-- docs-test: run -->`` before one: its ``$ `` commands run there, in order, and succeed.
EXAMPLE = re.compile(r"^<!-- docs-test: (write (\S+)|run) -->\n```[^\n]*\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!-- docs-test:.*-->")


def examples(page: Path) -> list[tuple[str | None, str]]:
    """The page's marked blocks in order: (file name, text) to write, (None, text) to run."""
    return [(m.group(2), m.group(3)) for m in EXAMPLE.finditer(page.read_text())]


RUNNABLE = [p for p in PAGES if examples(p)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_marker_is_on_a_code_block(page: Path) -> None:
    markers = MARKER.findall(page.read_text())
    assert len(markers) == len(examples(page)), (
        f"{page.name}: a docs-test marker is not right before a ``` block"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_examples_run_as_printed(page: Path, tmp_path: Path) -> None:
    """Each page's example, in an empty project of its own: its files written as printed, its
    commands run as printed (``conveyor`` being this checkout's)."""
    env = dict(os.environ)
    env.pop("CONVEYOR_DB", None)
    env.pop("CONVEYOR_SERVER", None)
    env["CONVEYOR_HOME"] = str(tmp_path / ".conveyor")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ran = 0
    for name, text in examples(page):
        if name is not None:
            (tmp_path / name).write_text(text)
            continue
        for line in text.splitlines():
            if not line.startswith("$ "):
                continue  # what the command prints: ids and times differ from run to run
            proc = subprocess.run(
                ["bash", "-c", line[2:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
            )
            assert proc.returncode == 0, f"{page.name}: {line}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, proc.stderr
            ran += 1
    assert ran, f"{page.name}: its examples run no command"
