"""Every CLI command and option is documented in docs/cli.md."""

from __future__ import annotations

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
