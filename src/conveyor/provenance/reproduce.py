"""``conveyor reproduce RUN``: re-execute a run's record and compare every output, byte for byte.

The code comes from the record, not from the working copy as it is now: the run's commit is
exported (``git archive``) into a scratch directory and its recorded diff applied there, so
edits made since do not leak in and the user's working copy is never touched. The pipeline runs
there in a subprocess (a fresh interpreter: the user's modules are imported from the checkout,
with the fixed hash seed) against a scratch store, with the run's parameters as recorded. Then
each output the original run recorded is compared with the one the re-run wrote.

Differences in what cannot be rebuilt (the Python version, the environment, the image the run
used) are said before running; ``strict`` refuses to run with them.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError, ReproduceError
from conveyor.loader import split_target
from conveyor.provenance.compare import Difference, compare
from conveyor.provenance.fingerprints import environment_hash, file_fingerprint
from conveyor.provenance.gitinfo import git
from conveyor.store import Store, open_store
from conveyor.store.records import RunRecord


@dataclass
class Outcome:
    """What ``reproduce`` found: warnings said before running, then per output."""

    run_id: str
    scratch: Path
    mismatches: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    different: list[tuple[str, Difference]] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    state: str = ""  # how the re-run ended

    @property
    def same(self) -> bool:
        return self.state == "succeeded" and not self.different


def mismatches(store: Store, run: RunRecord, tree: Path) -> list[str]:
    """What differs between the run's environment and this one, one line each."""
    prov = store.provenance(run.id)
    assert prov is not None
    lines = []
    here = platform.python_version()
    if prov.python != here:
        lines.append(f"Python: the run used {prov.python}, this is {here}")
    env_hash, env_kind = environment_hash(tree)
    if (env_hash, env_kind) != (prov.env_hash, prov.env_kind):
        lines.append(
            f"environment: the run's {prov.env_kind} hash {prov.env_hash[:12]}, "
            f"here {env_kind} {env_hash[:12]}"
        )
    lines += changed_inputs(store, run)
    if run.image:
        lines.append(f"image: the run's attempts ran in {run.image}; the re-run runs here, on this machine")
    return lines


def changed_inputs(store: Store, run: RunRecord) -> list[str]:
    """The files the run's tasks declared they read (``inputs=``) that hold something else now:
    the checkout rebuilds the code, not the data."""
    from conveyor.provenance.record import DECLARED

    lines = []
    for fps in store.instance_inputs(run.id).values():
        for fp in fps:
            if fp.get("from") != DECLARED or "sha256" not in fp:
                continue
            path = fp["path"] if "://" in fp["path"] else os.path.join(run.workdir, fp["path"])
            try:
                now = file_fingerprint(path).get("sha256") if "://" in path or os.path.exists(path) else None
            except (ConveyorError, OSError):
                now = None
            if now != fp["sha256"]:
                state = "is gone" if now is None else "holds something else"
                lines.append(f"input {fp['path']}: it {state} since the run")
    return sorted(set(lines))


def reproduce(
    store: Store,
    run_id: str,
    *,
    strict: bool = False,
    keep: bool = False,
    say: Callable[[str, bool], None] = lambda line, warning: print(line),
) -> Outcome:
    """Reproduce run ``run_id`` of ``store``; ``say(line, warning)`` gets the lines to show before
    it runs: each difference of environment (a warning), then what it runs."""
    run = store.get_run(run_id)
    prov = store.provenance(run.id)
    if prov is None or prov.git_commit is None:
        raise ReproduceError(
            f"run {run.id} has no recorded commit: it was not started from a git working copy (or "
            "before runs kept records); commit the project and run it again to make it reproducible"
        )
    top_out = git(["rev-parse", "--show-toplevel"], run.workdir) if os.path.isdir(run.workdir) else None
    if top_out is None or git(["cat-file", "-e", f"{prov.git_commit}^{{commit}}"], top_out.strip()) is None:
        raise ReproduceError(
            f"run {run.id}: commit {prov.git_commit[:12]} is not in a repository at {run.workdir}; "
            "reproduce it from a clone that has that commit"
        )
    top = Path(top_out.strip())
    scratch = Path(tempfile.mkdtemp(prefix=f"conveyor-reproduce-{run.id}-"))
    try:
        tree = checkout(top, prov.git_commit, prov.diff, scratch / "tree")
        workdir = tree / Path(run.workdir).resolve().relative_to(top.resolve())
        outcome = Outcome(run.id, scratch, mismatches(store, run, tree))
        for line in outcome.mismatches:
            say(line, True)
        if strict and outcome.mismatches:
            raise ReproduceError(f"run {run.id}: not reproduced, its environment differs here (--strict)")
        target = _target(run, top, tree)
        diff = " with its uncommitted diff" if prov.diff else ""
        say(f"re-running {run.pipeline} at {prov.git_commit[:12]}{diff} in {workdir}", False)
        home = scratch / "home"
        outcome.state = rerun(target, run.params, workdir, home, prov.source_date_epoch)
        again = open_store(f"sqlite:///{home / 'conveyor.db'}")
        try:
            new_run = again.list_runs(limit=1)[0]
            _compare_runs(store, run, again, new_run, Path(run.workdir), workdir, outcome)
        finally:
            again.close()
    except BaseException:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if not keep and outcome.same:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def checkout(top: Path, commit: str, diff: str | None, tree: Path) -> Path:
    """The files of ``commit`` in ``tree``, with ``diff`` applied."""
    tree.mkdir(parents=True)
    done = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=top, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise ReproduceError(
            f"git archive {commit[:12]} failed: {done.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(tree, filter="data")
    if diff:
        applied = subprocess.run(
            ["git", "apply", "--binary", "--whitespace=nowarn", "-"],
            cwd=tree,
            input=diff.encode("utf-8", errors="surrogateescape"),
            capture_output=True,
            check=False,
            # not a repository: a scratch directory inside one must not patch that one's root
            env={**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)},
        )
        if applied.returncode != 0:
            raise ReproduceError(
                f"the run's recorded diff does not apply to {commit[:12]}: "
                f"{applied.stderr.decode(errors='replace').strip().splitlines()[0]}"
            )
    return tree


def _target(run: RunRecord, top: Path, tree: Path) -> str:
    """The run's TARGET, its file moved into the checkout."""
    where, name = split_target(run.target)
    if not where.endswith(".py") and "/" not in where:
        return run.target  # a module: found from the checkout's working directory
    path = Path(where).resolve()
    try:
        moved = tree / path.relative_to(top.resolve())
    except ValueError:
        raise ReproduceError(
            f"run {run.id}: its pipeline {where} is outside the repository {top}; only code in "
            "the repository can be checked out again"
        ) from None
    return f"{moved}:{name}" if name else str(moved)


def rerun(target: str, params: dict[str, Any], workdir: Path, home: Path, epoch: float | None) -> str:
    """Run ``target`` with the recorded ``params`` in a fresh interpreter; how the run ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(home), PYTHONHASHSEED="0")
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(epoch))
    workdir.mkdir(parents=True, exist_ok=True)
    log = home.parent / "rerun.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.provenance.rerun", target, json.dumps(params)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode not in (0, 1):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ReproduceError(f"the re-run could not start: {tail[0]} (its log: {log})")
    return "succeeded" if done.returncode == 0 else "failed"


def _outputs(store: Store, run_id: str) -> dict[str, tuple[str, list[dict[str, Any]], str | None]]:
    """Per instance: its label, what its last successful attempt's targets held, its result."""
    outputs = store.succeeded_outputs(run_id)
    return {i.id: (i.label, outputs[i.id], i.result) for i in store.instances(run_id) if i.id in outputs}


def _compare_runs(
    store: Store, run: RunRecord, again: Store, new_run: RunRecord, old_dir: Path, new_dir: Path, out: Outcome
) -> None:
    before, after = _outputs(store, run.id), _outputs(again, new_run.id)
    for iid, (label, fps, result) in sorted(before.items(), key=lambda kv: kv[1][0]):
        if iid not in after:
            out.not_compared.append(
                f"{label}: not executed by the re-run (failed, or its targets exist outside the checkout)"
            )
            continue
        _, new_fps, new_result = after[iid]
        news = {_relative(fp.get("target", ""), new_dir): fp for fp in new_fps}
        for fp in fps:
            name = _relative(fp.get("target", ""), old_dir)
            new = news.get(name)
            if new is None:
                out.not_compared.append(f"{label}: {name} not written by the re-run")
            elif fp.get("kind") == "table":
                same = fp.get("rows") == new.get("rows")
                _tell(out, f"{label}: {name}", same, f"{fp.get('rows')} rows, reproduced {new.get('rows')}")
            elif "sha256" not in fp:
                out.not_compared.append(
                    f"{label}: {name} (no content hash: written by the task to its store)"
                )
            else:
                _file(out, f"{label}: {name}", fp, new, old_dir / name, new_dir / name)
        if result and new_result:
            a, b = file_fingerprint(result), file_fingerprint(new_result)
            _tell(
                out, f"{label}: its returned value", a["sha256"] == b["sha256"], "the returned value differs"
            )


def _file(out: Outcome, what: str, fp: dict[str, Any], new: dict[str, Any], old: Path, path: Path) -> None:
    if fp["sha256"] == new.get("sha256"):
        out.identical.append(what)
        return
    if old.is_file() and path.is_file() and file_fingerprint(str(old))["sha256"] == fp["sha256"]:
        diff = compare(old, path)
        out.different.append((what, diff or Difference("content hash differs")))
        return
    out.different.append(
        (
            what,
            Difference(
                f"content hash {fp['sha256'][:12]}, reproduced {str(new.get('sha256'))[:12]}",
                "the original file no longer holds what the run wrote: no detail",
            ),
        )
    )


def _tell(out: Outcome, what: str, same: bool, summary: str) -> None:
    if same:
        out.identical.append(what)
    else:
        out.different.append((what, Difference(summary)))


def _relative(target: str, root: Path) -> str:
    """A target's path relative to the run's working directory (as recorded, when it is)."""
    if not os.path.isabs(target):
        return Path(target).as_posix()
    try:
        return Path(target).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return target
