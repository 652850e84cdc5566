from __future__ import annotations

import json
from pathlib import Path

from conveyor import project as projects
from conveyor.git.repo import Repository
from conveyor.git.results import POINTER, Clerk, Note, commit, files
from conveyor.service import Service
from conveyor.store import open_store
from gitrepo import Work

PIPES = """
from conveyor import pipeline, task

@task
def double(n: int) -> int:
    return 2 * n

@pipeline
def one(n: int):
    double(n)
"""


def note(repo: Repository, run: str, code: str, root: Path, paths: tuple[str, ...] = ("out/",)) -> Note:
    return Note(run, "reports", code, "main", root, paths, max_file_size=100)


def test_each_run_is_one_commit_on_top_of_the_pushed_code_and_earlier_results_stay(tmp_path: Path) -> None:
    work = Work(tmp_path)
    code = work.commit({"pipes.py": "x = 1\n"})
    root = tmp_path / "export"
    (root / "out").mkdir(parents=True)
    (root / "out" / "a.csv").write_text("a\n1\n")
    (root / "out" / "big.bin").write_bytes(b"y" * 500)
    first = commit(work.repo, note(work.repo, "run-1", code, root), "succeeded", {"n": 1}, "http://h:1")
    assert work.repo.run("rev-parse", f"{first}^@").split() == [code]
    assert work.repo.show(first, "out/a.csv") == "a\n1"  # (show strips the last newline)
    pointer = work.repo.show(first, "out/big.bin") or ""
    sha = next(line.split()[1] for line in pointer.splitlines() if line.startswith("sha256 "))
    assert pointer.startswith(POINTER) and "size 500" in pointer
    assert f"get http://h:1/git/proj.git/large/{sha}" in pointer
    assert (work.repo.large / sha).read_bytes() == b"y" * 500

    newer = work.commit({"pipes.py": "x = 2\n"})
    other = tmp_path / "export2"
    (other / "figs").mkdir(parents=True)
    (other / "figs" / "f.svg").write_text("<svg/>")
    second = commit(work.repo, note(work.repo, "run-2", newer, other, ("figs/*.svg",)), "failed", {"n": 2})
    assert work.repo.run("rev-parse", f"{second}^@").split() == [first, newer]
    names = set(work.repo.run("ls-tree", "-r", "--name-only", second).split())
    assert names == {"pipes.py", "out/a.csv", "out/big.bin", "figs/f.svg"}
    assert work.repo.show(second, "pipes.py") == "x = 2"
    message = work.repo.run("log", "-1", "--format=%B", "refs/heads/results/main")
    assert message.startswith("results of run run-2 (reports): failed")
    assert f"commit: {newer}" in message and 'params: {"n": 2}' in message and "state: failed" in message


def test_result_paths_are_files_folders_and_globs(tmp_path: Path) -> None:
    for name in ("out/a.csv", "out/sub/b.csv", "report.md", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    found = [rel for rel, _ in files(tmp_path, ["out/", "*.md", "./report.md", "missing/"])]
    assert found == ["out/a.csv", "out/sub/b.csv", "report.md"]


def test_the_clerk_commits_a_run_once_it_has_ended_and_only_once(tmp_path: Path) -> None:
    work = Work(tmp_path)
    code = work.commit({"pipes.py": "x = 1\n"})
    root = tmp_path / "export"
    (root / "out").mkdir(parents=True)
    (root / "out" / "a.csv").write_text("a\n")
    (root / "conveyor.toml").write_text('[project]\npipelines = ["pipes.py"]\n')
    (root / "pipes.py").write_text(PIPES)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        run = Service(store, projects.find(root), where=root).trigger("one", {"n": 1})
        work.repo.pending.mkdir(parents=True)
        kept = {
            "run": run.id, "pipeline": "one", "commit": code, "branch": "main", "root": str(root),
            "results": ["out/"], "max_file_size": 100,
        }  # fmt: skip
        (work.repo.pending / f"{run.id}.json").write_text(json.dumps(kept))
        clerk = Clerk(work.repo, store)
        assert clerk.step() == [] and work.repo.resolve("refs/heads/results/main") is None  # not ended
        assert store.request_cancel(run.id) == "cancelled"  # no scheduler drives it: it ends now
        assert clerk.step() == [run.id]
        assert work.repo.show("refs/heads/results/main", "out/a.csv") == "a"
        assert "state: cancelled" in work.repo.run("log", "-1", "--format=%B", "refs/heads/results/main")
        assert clerk.step() == [] and list(work.repo.pending.iterdir()) == []
        # a clerk that died holding a note: the note is pending again (committed once more here)
        (work.repo.pending / f"{run.id}.999999999.claimed").write_text(json.dumps(kept))
        assert clerk.step() == [run.id]
    finally:
        store.close()
