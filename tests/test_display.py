"""The live progress display in a terminal, rendered as a terminal of 16 colours receives it."""

from __future__ import annotations

import io
import re
import sys

import pytest

from conveyor.display import Snapshot, Terminal

TERMS = {"standard": ("xterm", ""), "256": ("xterm-256color", ""), "truecolor": ("xterm", "truecolor")}


def drawn(done: int, total: int, state: str, colors: str) -> dict[str, int]:
    """How many bar cells each SGR colour code got, in the last frame the display drew on a
    terminal (``$TERM``, ``$COLORTERM``) of ``colors``."""
    out = io.StringIO()
    term, colorterm = TERMS[colors]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORCE_COLOR", "1")  # standard error is a terminal
        mp.setenv("TERM", term)
        mp.setenv("COLORTERM", colorterm)
        mp.delenv("NO_COLOR", raising=False)
        mp.setattr(sys, "stderr", out)
        shown = Terminal()
        shown.show(Snapshot("run", "r1", "three", state, done, total, "tasks", {"succeeded": done}))
        shown.close()
    frame = out.getvalue().split("\r")[-1]
    cells: dict[str, int] = {}
    for code, chars in re.findall(r"\x1b\[([\d;]+)m([━╸╺]+)", frame):
        cells[code] = cells.get(code, 0) + len(chars)
    return cells


@pytest.mark.parametrize("color_system", ["standard", "256", "truecolor"])
def test_a_finished_run_draws_a_full_coloured_bar(color_system: str) -> None:
    finished = drawn(3, 3, "succeeded", color_system)
    pending = drawn(0, 3, "pending", color_system)
    assert sum(finished.values()) == 20 and len(finished) == 1, finished
    assert sum(pending.values()) == 20 and len(pending) == 1, pending
    assert finished.keys() != pending.keys(), "a finished bar looks like an empty one"
    if color_system == "standard":
        assert finished == {"32": 20}  # green
    failed = drawn(3, 3, "failed", color_system)
    assert failed.keys() not in (finished.keys(), pending.keys())


def test_a_bar_under_way_shows_its_part_done_apart_from_the_rest() -> None:
    cells = drawn(1, 3, "running", "standard")
    assert len(cells) == 2 and cells.get("90", 0) > cells.get("34", 0) > 0, cells
