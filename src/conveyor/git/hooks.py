"""The bare repository's hooks: ``python -m conveyor.git.hooks pre-receive|post-receive``.

``git receive-pack`` (run by ``git http-backend``, run by the server per request) runs them with
the ref updates on stdin; what they print reaches the pushing client as ``remote: ...`` lines
(git's sideband), and a pre-receive hook that exits non-zero makes the client print
``! [remote rejected]``. The server hands them who pushes and where the store is in their
environment (``CONVEYOR_GIT_*``, ``CONVEYOR_DB``), so the hooks need no call back into it:

- **pre-receive** refuses, with one line, a push to ``results/*`` (the server writes those) and
  a push by someone who is not a lead of the project's team that changes its configuration
  (``conveyor.toml`` and what its ``[project] configuration`` names, before or after the push);
- **post-receive** starts what the pushed commit's ``[[push]]`` says for its branch: a clean
  export of the commit (``Repository.checkout``), its pipelines loaded from there, one submitted
  run each (as the API's trigger does), and a note for the server's results clerk
  (``conveyor.git.results``), which commits the run's results when it ends.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.git import settings as git_settings
from conveyor.git.repo import ZERO, Repository

#: The ref prefix of branches, and of the branches the server writes results on.
HEADS = "refs/heads/"
RESULTS = "refs/heads/results/"


@dataclass(frozen=True, slots=True)
class Pusher:
    """Who pushes, as the server found them (``role``: lead, member, ...; "" when auth is off)."""

    user: str
    role: str
    team: str

    @classmethod
    def from_env(cls) -> Pusher:
        return cls(
            os.environ.get("CONVEYOR_GIT_USER", ""),
            os.environ.get("CONVEYOR_GIT_ROLE", ""),
            os.environ.get("CONVEYOR_GIT_TEAM", ""),
        )

    @property
    def configures(self) -> bool:
        """May they change the project's configuration? Leads and admins; everyone when auth is off."""
        return self.role in ("", "lead", "admin")


def updates(lines: Iterable[str]) -> list[tuple[str, str, str]]:
    """``old new ref`` per line, as git hands them to the hooks."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


def refusal(repo: Repository, pusher: Pusher, old: str, new: str, ref: str) -> str | None:
    """Why this ref update is refused (one line), or None."""
    if ref.startswith(RESULTS):
        return f"{ref[len(HEADS) :]}: results branches are written by the server; push code to another branch"
    if pusher.configures:
        return None
    if new == ZERO:
        if ref == repo.run("symbolic-ref", "HEAD"):
            return f"refused: {ref[len(HEADS) :]} is the project's default branch; only a lead may delete it"
        return None
    base = old if old != ZERO else _base_of_new_branch(repo, new)
    configuration = set(_configuration(repo, base)) | set(_configuration(repo, new))
    changed = _changed(repo, base, new)
    touched = [p for p in changed if git_settings.is_configuration(p, configuration)]
    if not touched:
        return None
    team = f"team {pusher.team}" if pusher.team else "the project's team"
    return (
        f"refused: {touched[0]} is the project's configuration, and only a lead of {team} may change "
        f"it (you are {pusher.role}); ask a lead to push this change"
    )


def _base_of_new_branch(repo: Repository, new: str) -> str | None:
    """What a new branch is compared with: where it left the default branch (None: the first push)."""
    head = repo.resolve("HEAD")
    if head is None:
        return None
    try:
        return repo.run("merge-base", head, new) or head
    except ConveyorError:
        return head


def _configuration(repo: Repository, commit: str | None) -> tuple[str, ...]:
    text = None if commit is None else repo.show(commit, git_settings.FILE)
    if text is None:
        return (git_settings.FILE,)
    try:
        return git_settings.parse(text).configuration
    except ConveyorError:
        return (git_settings.FILE,)


def _changed(repo: Repository, base: str | None, new: str) -> list[str]:
    if base is None:
        return repo.run("ls-tree", "-r", "--name-only", new).splitlines()
    return repo.run("diff", "--name-only", "--no-renames", base, new).splitlines()


def pre_receive(repo: Repository, pusher: Pusher, lines: Iterable[str]) -> int:
    for old, new, ref in updates(lines):
        why = refusal(repo, pusher, old, new, ref)
        if why is not None:
            print(why, file=sys.stderr)
            return 1
    return 0


def post_receive(repo: Repository, pusher: Pusher, lines: Iterable[str]) -> int:
    """Start what each pushed branch's ``[[push]]`` says; one line per run started (or not)."""
    for _old, new, ref in updates(lines):
        if new == ZERO or not ref.startswith(HEADS) or ref.startswith(RESULTS):
            continue
        branch = ref[len(HEADS) :]
        try:
            start(repo, pusher, branch, new)
        except ConveyorError as exc:
            print(f"conveyor: {branch} at {new[:12]}: nothing started: {exc}", file=sys.stderr)
    return 0


def start(repo: Repository, pusher: Pusher, branch: str, commit: str) -> list[str]:
    """Submit the runs ``[[push]]`` declares for ``branch`` at ``commit``, in a clean export of
    the commit; returns their ids."""
    text = repo.show(commit, git_settings.FILE)
    if text is None:
        print(f"conveyor: {commit[:12]} has no {git_settings.FILE}: no run started", file=sys.stderr)
        return []
    conf = git_settings.parse(text)
    wanted = conf.starts(branch)
    if not wanted:
        print(
            f"conveyor: no [[push]] in {git_settings.FILE} matches branch {branch}: no run started "
            f'(to start runs, add one with branch = "{branch}")',
            file=sys.stderr,
        )
        return []
    from conveyor import project as projects
    from conveyor.service import Service
    from conveyor.store import open_store

    root = repo.checkout(commit)
    os.chdir(root)  # the pipelines' code is imported here, as the scheduler will: not in the bare repository
    found = projects.read(root / git_settings.FILE)
    if (found.team or "") != pusher.team and "CONVEYOR_GIT_TEAM" in os.environ:
        served = f"team {pusher.team}'s" if pusher.team else "of no team"
        print(
            f"conveyor: {git_settings.FILE} at {commit[:12]} names team {found.team or '(none)'}, but the "
            f"project this server serves is {served}: no run started (a lead sets [project] team on "
            "the server too)",
            file=sys.stderr,
        )
        return []
    base = os.environ.get("CONVEYOR_GIT_URL", "").rstrip("/")
    store = open_store(os.environ.get("CONVEYOR_DB"))
    started = []
    try:
        service = Service(store, found, where=root)
        for push in wanted:
            for name in push.pipelines:
                try:
                    run = service.trigger(name, push.params, from_text=True, created_by=pusher.user or None)
                except ConveyorError as exc:
                    print(f"conveyor: {name}: not started: {exc}", file=sys.stderr)
                    continue
                _note(repo, run.id, name, commit, branch, root, conf)
                started.append(run.id)
                print(f"run {run.id} started: {base}/#/runs/{run.id}", file=sys.stderr)
    finally:
        store.close()
    return started


def _note(
    repo: Repository,
    run: str,
    pipeline: str,
    commit: str,
    branch: str,
    root: Path,
    conf: git_settings.Settings,
) -> None:
    """What the results clerk needs when the run ends, written whole (temporary file, rename)."""
    repo.pending.mkdir(parents=True, exist_ok=True)
    note = {
        "run": run,
        "pipeline": pipeline,
        "commit": commit,
        "branch": branch,
        "root": str(root),
        "results": list(conf.results),
        "max_file_size": conf.max_file_size,
    }
    tmp = repo.pending / f".{run}.json"
    tmp.write_text(json.dumps(note))
    tmp.rename(repo.pending / f"{run}.json")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("pre-receive", "post-receive"):
        print("usage: python -m conveyor.git.hooks pre-receive|post-receive", file=sys.stderr)
        return 2
    home, name = os.environ.get("CONVEYOR_GIT_HOME"), os.environ.get("CONVEYOR_GIT_NAME")
    if not home or not name:
        print("conveyor: this repository is served by conveyor server; push through it", file=sys.stderr)
        return 1
    repo = Repository(Path(home), name)
    hook = pre_receive if argv[0] == "pre-receive" else post_receive
    return hook(repo, Pusher.from_env(), sys.stdin.read().splitlines())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
