"""The few git questions the run record asks, through the ``git`` command: a working copy is
whatever git says it is (worktrees, submodules, ``safe.directory``), and git is installed
wherever there is a repository to ask about."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


def git(args: list[str], cwd: str | Path) -> str | None:
    """``git ARGS`` in ``cwd``: its output, or None when it fails (not a repository, no git)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # ``diff --no-index`` exits 1 when the files differ: its output is still the patch.
    if done.returncode != 0 and not (args[:1] == ["diff"] and done.returncode == 1):
        return None
    return done.stdout.decode("utf-8", errors="surrogateescape")


@functools.lru_cache(maxsize=16)
def commit_time(workdir: str, run_id: str) -> float | None:
    """The time of the commit checked out in ``workdir`` (asked once per run and worker);
    None outside a git working copy."""
    out = git(["log", "-1", "--format=%ct", "HEAD"], workdir)
    return float(out.strip()) if out and out.strip().isdigit() else None
