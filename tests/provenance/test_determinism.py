"""What a task's worker sets up so that a re-run writes the same bytes: figures without
timestamps or random ids whenever matplotlib gets imported, the commit's time and a fixed hash
seed for the processes a task starts, and ``conveyor.seed()``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conveyor
from conveyor.provenance import determinism

FIGURES = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from conveyor.provenance import determinism

    determinism.enter({"n": 1}, "i1", 1700000000.0)  # before matplotlib is imported
    from matplotlib.figure import Figure  # the import hook patches it here

    out = {}
    for fmt in ("png", "svg", "pdf"):
        digests = []
        for attempt in range(2):
            fig = Figure()
            fig.subplots().plot([1, 3, 2], label="line")
            path = f"{sys.argv[1]}/fig{attempt}.{fmt}"
            fig.savefig(path)
            digests.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
        out[fmt] = {"same": digests[0] == digests[1], "bytes": open(path, "rb").read().decode("latin-1")}
    out["env"] = [os.environ.get("SOURCE_DATE_EPOCH"), os.environ.get("PYTHONHASHSEED")]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Figures saved twice in a fresh interpreter (matplotlib not imported yet)."""
    where = tmp_path_factory.mktemp("figures")
    env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH", "PYTHONHASHSEED")}
    env["MPLBACKEND"] = "agg"
    done = subprocess.run(
        [sys.executable, "-c", FIGURES, str(where)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_a_figure_saved_twice_is_byte_identical(figures: dict[str, dict[str, object]], fmt: str) -> None:
    assert figures[fmt]["same"]


def test_figures_carry_no_software_or_date(figures: dict[str, dict[str, str]]) -> None:
    assert "Software" not in figures["png"]["bytes"] and "Matplotlib version" not in figures["png"]["bytes"]
    assert "<dc:date>" not in figures["svg"]["bytes"]
    assert "/CreationDate" not in figures["pdf"]["bytes"]


def test_processes_a_task_starts_get_the_commits_time_and_a_fixed_hash_seed(
    figures: dict[str, list[str]],
) -> None:
    assert figures["env"] == ["1700000000", determinism.HASH_SEED]


def test_a_task_passing_its_own_metadata_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    determinism.watch_matplotlib()
    fig = Figure()
    fig.subplots().plot([1, 2])
    fig.savefig(tmp_path / "mine.png", metadata={"Software": "my tool"})
    assert b"my tool" in (tmp_path / "mine.png").read_bytes()


def test_seed_is_the_same_for_the_same_run_parameters_and_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(determinism, "_current", None)
    monkeypatch.setenv("PYTHONHASHSEED", "random")  # enter() sets it: put back afterwards
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    determinism.enter({"n": 1, "day": "2026-01-02"}, "i1", None)
    first = conveyor.seed()
    drawn = [random.random(), random.random()]
    assert conveyor.seed() == first and [random.random(), random.random()] == drawn  # seeded again
    import numpy

    conveyor.seed()
    assert numpy.random.random() == (conveyor.seed(), numpy.random.random())[1]
    determinism.enter({"n": 1, "day": "2026-01-02"}, "i2", None)
    assert conveyor.seed() != first  # another instance
    determinism.enter({"n": 2, "day": "2026-01-02"}, "i1", None)
    assert conveyor.seed() != first  # other parameters
    determinism.enter({"day": "2026-01-02", "n": 1}, "i1", None)
    assert conveyor.seed() == first  # the order parameters come in does not matter
