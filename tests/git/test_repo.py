from __future__ import annotations

import os
from pathlib import Path

from conveyor.git.repo import Repository
from gitrepo import Work


def test_a_commit_is_exported_once_clean_and_kept(tmp_path: Path) -> None:
    work = Work(tmp_path)
    first = work.commit({"pipes.py": "x = 1\n", "sub/a.txt": "a\n"})
    work.commit({"pipes.py": "x = 2\n"})
    root = work.repo.checkout(first)
    assert (root / "pipes.py").read_text() == "x = 1\n" and (root / "sub" / "a.txt").is_file()
    assert not (root / ".git").exists()
    (root / "out.txt").write_text("written by a run")
    assert work.repo.checkout(first) == root and (root / "out.txt").exists()  # cached, not made again
    assert [p.name for p in work.repo.checkouts.iterdir()] == [first]


def test_ensure_makes_a_bare_repository_whose_hooks_call_this_python(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "home", "fresh").ensure()
    assert repo.run("rev-parse", "--is-bare-repository") == "true"
    hook = repo.path / "hooks" / "pre-receive"
    assert os.access(hook, os.X_OK) and "-m conveyor.git.hooks pre-receive" in hook.read_text()
    assert repo.resolve("HEAD") is None
