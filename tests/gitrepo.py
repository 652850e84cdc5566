"""A real bare repository with commits, made with plain git, for the git remote's unit tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conveyor.git.repo import Repository

ENV = {
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **ENV}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class Work:
    """A working copy whose commits are pushed into the bare repository ``repo``."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "work"
        self.root.mkdir()
        sh(self.root, "init", "-q", "-b", "main")
        self.repo = Repository(tmp / "home", "proj")
        self.repo.home.mkdir()
        sh(tmp, "init", "-q", "--bare", "-b", "main", str(self.repo.path))

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        sh(self.root, "add", "-A")
        sh(self.root, "commit", "-q", "-m", message)
        sha = sh(self.root, "rev-parse", "HEAD")
        sh(self.root, "push", "-q", str(self.repo.path), "HEAD:refs/heads/main")
        return sha
