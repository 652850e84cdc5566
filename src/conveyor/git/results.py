"""Results by pull: when a run a push started ends, its results are committed on
``results/<branch>`` of the project's bare repository, one commit per run.

    git pull conveyor results/main

Each results commit has two parents: the branch's previous results commit and the pushed commit
the run executed, so it merges into the branch that was pushed (``git pull`` fast-forwards or
merges, no unrelated history). Its tree is the pushed commit's tree, plus the result files earlier
results commits added (results of other pipelines stay), plus this run's result files; its message
names the run, the pushed commit, the parameters and the run's state. A file larger than
``[results] max_file_size`` is not put in git: it is kept under
``<home>/git/<project>.large/<sha256>`` and git holds a small pointer file in its place, which
names its hash and where the server serves it.

Only plumbing on the bare repository (``hash-object``, a temporary index, ``write-tree``,
``commit-tree``, ``update-ref`` with the old value): no working copy, and a concurrent push or
results commit makes ``update-ref`` fail instead of losing a commit (the clerk tries again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.git.repo import ZERO, Repository
from conveyor.store import Store

log = logging.getLogger("conveyor.git")

#: The run states after which nothing changes.
ENDED = ("succeeded", "failed", "cancelled")

#: The first line of a pointer file: how to tell one from a result.
POINTER = "conveyor large result v1"

#: The identity results commits are made by.
AUTHOR = {
    "GIT_AUTHOR_NAME": "Conveyor",
    "GIT_AUTHOR_EMAIL": "conveyor@localhost",
    "GIT_COMMITTER_NAME": "Conveyor",
    "GIT_COMMITTER_EMAIL": "conveyor@localhost",
}


@dataclass(frozen=True, slots=True)
class Note:
    """What a push left for its run (``hooks._note``)."""

    run: str
    pipeline: str
    commit: str
    branch: str
    root: Path
    results: tuple[str, ...]
    max_file_size: int

    @classmethod
    def read(cls, path: Path) -> Note:
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(
            data["run"],
            data["pipeline"],
            data["commit"],
            data["branch"],
            Path(data["root"]),
            tuple(data["results"]),
            int(data["max_file_size"]),
        )


def files(root: Path, patterns: Iterable[str]) -> list[tuple[str, Path]]:
    """The result files under ``root``: each pattern a file, a folder (everything under it) or a
    glob; as (path relative to root, file), sorted, without duplicates."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        for hit in sorted(root.glob(pattern.removeprefix("./").rstrip("/"))):
            for path in [hit] if hit.is_file() else sorted(p for p in hit.rglob("*") if p.is_file()):
                rel = path.relative_to(root).as_posix()
                if not rel.startswith(".git/"):
                    found[rel] = path
    return sorted(found.items())


def commit(repo: Repository, note: Note, state: str, params: dict[str, Any], url: str = "") -> str:
    """Commit the run's results on ``results/<branch>``; returns the new commit."""
    ref = f"refs/heads/results/{note.branch}"
    parent = repo.resolve(ref)
    kept: list[str] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-results-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), **AUTHOR}
        repo.run("read-tree", note.commit, env=env)
        entries = _earlier(repo, parent) if parent is not None else []
        n = 0
        for rel, path in files(note.root, note.results):
            n += 1
            if path.stat().st_size > note.max_file_size:
                blob = repo.run("hash-object", "-w", "--stdin", input=_keep(repo, path, rel, url).encode())
                kept.append(rel)
            else:
                blob = repo.run("hash-object", "-w", "--", str(path))
            entries.append(f"100644 {blob}\t{rel}\n")
        if entries:
            repo.run("update-index", "--add", "--index-info", input="".join(entries).encode(), env=env)
        tree = repo.run("write-tree", env=env)
    message = _message(note, state, params, n, kept)
    parents = ["-p", parent, "-p", note.commit] if parent else ["-p", note.commit]
    new = repo.run("commit-tree", tree, *parents, "-F", "-", input=message.encode(), env=AUTHOR)
    repo.run("update-ref", "-m", f"conveyor: results of run {note.run}", ref, new, parent or ZERO)
    return new


def _earlier(repo: Repository, tip: str) -> list[str]:
    """The index lines of the results an earlier results commit holds: what it changed from its
    code commit (its last parent). They stay, so results of other pipelines are kept."""
    code = repo.run("rev-parse", f"{tip}^@").split()[-1]
    paths = repo.run("diff", "--name-only", "--no-renames", "--diff-filter=AM", code, tip).splitlines()
    if not paths:
        return []
    listed = repo.run("ls-tree", tip, "--", *paths).splitlines()
    return [line.replace(" blob ", " ", 1) + "\n" for line in listed if " blob " in line]


def _keep(repo: Repository, path: Path, rel: str, url: str) -> str:
    """Keep a large file by its hash beside the repository; the pointer file's text."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    repo.large.mkdir(parents=True, exist_ok=True)
    dest = repo.large / sha
    if not dest.exists():
        tmp = repo.large / f".{sha}.tmp"
        shutil.copyfile(path, tmp)
        tmp.rename(dest)
    where = f"{url.rstrip('/')}/git/{repo.name}.git/large/{sha}" if url else f"{repo.large}/{sha}"
    return f"{POINTER}\npath {rel}\nsha256 {sha}\nsize {path.stat().st_size}\nget {where}\n"


def _message(note: Note, state: str, params: dict[str, Any], n: int, kept: list[str]) -> str:
    lines = [
        f"results of run {note.run} ({note.pipeline}): {state}",
        "",
        f"run: {note.run}",
        f"pipeline: {note.pipeline}",
        f"commit: {note.commit}",
        f"branch: {note.branch}",
        f"params: {json.dumps(params, sort_keys=True)}",
        f"state: {state}",
        f"files: {n}",
    ]
    if kept:
        lines.append(f"kept by hash (pointer files): {', '.join(kept)}")
    return "\n".join(lines) + "\n"


class Clerk:
    """A thread of the server that commits the results of each pushed run once it has ended.
    The notes are files, so a server restarted (or another server on the same home) carries on
    where this one stopped; a note is removed only after its commit is in."""

    def __init__(self, repo: Repository, store: Store, url: str = "", every: float = 1.0) -> None:
        self.repo = repo
        self.store = store
        self.url = url
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conveyor-git-results", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.step()

    def step(self) -> list[str]:
        """Commit what has ended; the ids of the runs committed."""
        done: list[str] = []
        if not self.repo.pending.is_dir():
            return done
        _give_back(self.repo.pending)
        for path in sorted(self.repo.pending.glob("*.json")):
            try:
                note = Note.read(path)
                run = self.store.get_run(note.run)
            except ConveyorError as exc:
                log.warning("results of %s not committed yet: %s", path.stem, exc)
                continue
            except (OSError, ValueError, KeyError) as exc:
                if path.exists():
                    log.error("results note %s is unreadable (%s); set aside", path, exc)
                    path.rename(path.with_suffix(".bad"))
                continue
            if run.state in ENDED and self._commit(path, note, run.state, run.params):
                done.append(note.run)
        return done

    def _commit(self, path: Path, note: Note, state: str, params: dict[str, Any]) -> bool:
        """Commit one run's results, the note claimed first (renamed: another server's clerk on
        the same home skips it), given back when the commit fails (tried again next time)."""
        claimed = path.with_suffix(f".{os.getpid()}.claimed")
        try:
            path.rename(claimed)
        except FileNotFoundError:
            return False  # another clerk has it
        try:
            commit(self.repo, note, state, params, self.url)
        except (ConveyorError, OSError) as exc:
            log.warning("results of run %s not committed yet: %s", note.run, exc)
            claimed.rename(path)
            return False
        claimed.unlink()
        log.info("results of run %s committed on results/%s", note.run, note.branch)
        return True


def _give_back(pending: Path) -> None:
    """Notes claimed by a clerk whose process has died, made pending again."""
    for claimed in pending.glob("*.claimed"):
        run, _, pid = claimed.stem.rpartition(".")
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                claimed.rename(pending / f"{run}.json")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["POINTER", "Clerk", "Note", "commit", "files"]
