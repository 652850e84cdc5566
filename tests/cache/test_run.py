"""The result cache end to end: real ``conveyor run`` processes in a real git repository whose
second commit changes one task's code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Project
from conveyor.store import open_embedded

pytestmark = pytest.mark.slow

PIPELINE = """
from conveyor import output, pipeline, task


def double(x):
    return x * 2


@task(output="out/a.txt")
def a():
    with open(output(), "w") as f:
        f.write("A1\\n")


@task(output="out/b.txt")
def b():
    with open(output(), "w") as f:
        f.write("B1\\n")


@task(output="out/c.txt")
def c(left, right):
    with open(output(), "w") as f:
        f.write(open("out/a.txt").read() + open("out/b.txt").read())


@task
def total():
    return double(21)


@task
def report(t):
    return f"total {t}"


@pipeline
def main():
    c(a(), b())
    report(total())
"""


@pytest.fixture(autouse=True)
def cache_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite turns the cache off (tests/conftest.py); here it is the project's default."""
    monkeypatch.delenv("CONVEYOR_CACHE", raising=False)


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout


def run(project: Project, *args: str) -> dict:
    """``conveyor run`` then ``conveyor show --json`` of the run it made."""
    return show(project.root, project.env(), "run", "pipe.py:main", *args)


def show(where: Path, env: dict[str, str], *args: str) -> dict:
    """Run ``conveyor ARGS`` (a run) in ``where``, then ``conveyor show --json`` of that run."""
    ran = subprocess.run(
        [sys.executable, "-m", "conveyor", *args], cwd=where, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = re.search(r"run (\S+) of", ran.stdout)
    assert found, ran.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "show", found.group(1), "--json"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(shown.stdout), "printed": ran.stdout}


def by_task(shown: dict) -> dict[str, dict]:
    return {t["task"]: t for t in shown["tasks"]}


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


@pytest.fixture
def repo(project: Project) -> Project:
    """The project as a git repository with one commit of the pipeline, run once."""
    project.write("pipe.py", PIPELINE)
    git(project.root, "init", "-q", ".")
    git(project.root, "add", "pipe.py")
    git(project.root, "commit", "-qm", "one")
    return project


def test_a_second_commit_reuses_the_unchanged_and_reruns_the_changed_and_what_is_below(repo: Project) -> None:
    first = run(repo)
    assert all(t["state"] == "succeeded" and t["attempts"] == 1 for t in first["tasks"])
    a_before = stamp(repo.root / "out/a.txt")
    # the second commit changes b's code, and the helper `total` calls
    source = PIPELINE.replace('"B1', '"B2').replace("x * 2", "x * 3")
    repo.write("pipe.py", source)
    git(repo.root, "commit", "-qam", "two")

    second = run(repo)
    tasks = by_task(second)
    assert tasks["a"]["reused_from"] == first["id"] and tasks["a"]["attempts"] == 0
    assert tasks["a"]["state"] == "skipped"  # its target holds what run 1 made: done, as targets say
    assert stamp(repo.root / "out/a.txt") == a_before  # not rewritten, not even touched
    for name in ("b", "c", "total", "report"):  # changed, or below a change
        assert tasks[name]["reused_from"] is None and tasks[name]["attempts"] == 1, name
    assert (repo.root / "out/c.txt").read_text() == "A1\nB2\n"
    shown = repo.cli("show", second["id"], check=True).stdout
    assert f"a(): reused from run {first['id']}" in shown
    assert "b(): reused" not in shown

    # a new run of the same commit: everything reused, results-only tasks too, their values the same
    third = run(repo)
    assert {t["task"]: t["reused_from"] for t in third["tasks"]} == {
        "a": first["id"],
        "b": second["id"],
        "c": second["id"],
        "total": second["id"],
        "report": second["id"],
    }
    assert all(t["attempts"] == 0 for t in third["tasks"])
    assert "5 reused from earlier runs" in third["printed"]
    states = {t["task"]: t["state"] for t in third["tasks"]}
    assert states == {
        "a": "skipped",
        "b": "skipped",
        "c": "skipped",
        "total": "succeeded",
        "report": "succeeded",
    }
    store = open_embedded(repo.db)
    (result,) = [i.result for i in store.instances(third["id"]) if i.task == "report"]
    store.close()
    assert result is not None and json.loads(Path(result).read_text()) == "total 63"


def test_no_cache_reuses_nothing(repo: Project) -> None:
    run(repo)
    again = by_task(run(repo, "--no-cache"))
    assert all(t["reused_from"] is None for t in again.values())
    # tasks without targets execute again; tasks with targets keep targets' rule (done: skipped)
    assert again["total"]["attempts"] == 1 and again["report"]["attempts"] == 1
    assert {again[n]["state"] for n in ("a", "b", "c")} == {"skipped"}


def test_the_project_can_turn_the_cache_off(repo: Project) -> None:
    repo.write("conveyor.toml", "[cache]\nenabled = false\n")
    run(repo)
    again = by_task(run(repo))
    assert all(t["reused_from"] is None and t["cache_key"] is None for t in again.values())
    assert again["total"]["attempts"] == 1


def test_an_input_changed_by_hand_reruns_what_reads_it(repo: Project) -> None:
    run(repo)
    (repo.root / "out/a.txt").write_text("edited by hand\n")
    tasks = by_task(run(repo))
    assert tasks["a"]["state"] == "skipped"  # its target exists: done, as targets always say
    assert tasks["c"]["attempts"] == 1 and tasks["c"]["reused_from"] is None
    assert (repo.root / "out/c.txt").read_text() == "edited by hand\nB1\n"
    assert tasks["b"]["reused_from"] is not None


def test_a_checkout_elsewhere_gets_the_outputs_copied_into_place(repo: Project, tmp_path: Path) -> None:
    first = run(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.root), str(clone))
    elsewhere = Project(clone)
    env = elsewhere.env()
    env["CONVEYOR_HOME"] = str(repo.root / ".conveyor")  # the same store, as a server's checkouts share
    second = show(clone, env, "run", "pipe.py:main")
    assert second["id"] != first["id"]
    assert {t["reused_from"] for t in second["tasks"]} == {first["id"]}
    assert (clone / "out/c.txt").read_text() == "A1\nB1\n"
    assert stamp(clone / "out/a.txt")[0] != stamp(repo.root / "out/a.txt")[0]  # a copy, not a link
