"""The project's bare repository under the server's home, and the git plumbing run on it.

    <home>/git/<project>.git          the bare repository git clients push to and pull from
    <home>/git/<project>.checkouts/   one clean export per pushed commit (``checkout``)
    <home>/git/<project>.pending/     runs a push started whose results are not committed yet
    <home>/git/<project>.large/       result files over the size limit, by their sha256

Everything is done with git's own commands on the bare repository (no working copy), so a push,
an export and a results commit never race over files; refs move only by ``update-ref`` with the
value they are expected to hold.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from conveyor.errors import GitError

#: git's name for "no commit" in a ref update.
ZERO = "0" * 40

#: A repository's name in a URL: /git/NAME.git
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

_HOOK = """#!/bin/sh
# written by conveyor server: {what}
exec "{python}" -m conveyor.git.hooks {what}
"""

_made: set[Path] = set()
_lock = threading.Lock()


def git(
    *args: str, cwd: Path | None = None, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    """git's stdout; ``GitError`` with git's own message when it fails."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed on the server: install it (apt-get install git)") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {why[-1] if why else f'exit {done.returncode}'}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Repository:
    """The bare repository of one project and the folders beside it."""

    home: Path  # <home>/git
    name: str

    @property
    def path(self) -> Path:
        return self.home / f"{self.name}.git"

    @property
    def checkouts(self) -> Path:
        return self.home / f"{self.name}.checkouts"

    @property
    def pending(self) -> Path:
        return self.home / f"{self.name}.pending"

    @property
    def large(self) -> Path:
        return self.home / f"{self.name}.large"

    def run(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        return git(f"--git-dir={self.path}", *args, input=input, env=env).decode().strip()

    def ensure(self) -> Repository:
        """Create the bare repository (once) and (once per process) write its hooks, which call
        back into this Python: a server started from another environment rewrites them."""
        with _lock:
            if self.path in _made:
                return self
            if not (self.path / "HEAD").is_file():
                self.home.mkdir(parents=True, exist_ok=True)
                git("init", "--quiet", "--bare", "--initial-branch=main", str(self.path))
            self.run("config", "http.receivepack", "true")  # pushes are authorized by the server
            self.run("config", "receive.denyNonFastForwards", "false")
            for what in ("pre-receive", "post-receive"):
                hook = self.path / "hooks" / what
                hook.parent.mkdir(exist_ok=True)
                hook.write_text(_HOOK.format(what=what, python=sys.executable))
                hook.chmod(0o755)
            _made.add(self.path)
        return self

    def resolve(self, rev: str) -> str | None:
        """The commit ``rev`` names, or None when there is none."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") or None
        except GitError:
            return None

    def show(self, commit: str, path: str) -> str | None:
        """The text of ``path`` at ``commit``; None when the commit has no such file."""
        try:
            return self.run("show", f"{commit}:{path}")
        except GitError:
            return None

    def checkout(self, commit: str) -> Path:
        """A clean export of ``commit``, made once per commit and kept: runs started by a push
        execute this folder's code, never the server's working copy. Made in a temporary folder
        and renamed into place, so a half-made export is never seen."""
        dest = self.checkouts / commit
        if dest.is_dir():
            return dest
        self.checkouts.mkdir(parents=True, exist_ok=True)
        data = git(f"--git-dir={self.path}", "archive", "--format=tar", commit)
        tmp = Path(tempfile.mkdtemp(dir=self.checkouts, prefix=f".{commit[:12]}-"))
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(dest)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


__all__ = ["NAME", "ZERO", "Repository", "git"]
