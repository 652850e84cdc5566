"""Taking the run record: at a run's creation, the code and environment it starts from; at its
end, the fingerprints of what each of its task instances read.

The code is named by its git commit; uncommitted work is kept as a patch (``git diff --binary
HEAD`` plus the untracked *source* files, as new-file patches) so that ``conveyor reproduce``
can rebuild the exact tree. Untracked files count only when they look like code or
configuration (``SOURCE_SUFFIXES``): a task's outputs written inside the working copy (figures,
CSV, Markdown) would otherwise make every run look dirty and carry its results in its diff.
A working copy that is not a git repository, or a machine without git, records no commit: the
run still runs, and ``reproduce`` says it cannot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.graph import Graph, Node
from conveyor.provenance.fingerprints import environment_hash, file_fingerprint
from conveyor.provenance.gitinfo import git
from conveyor.store import Store
from conveyor.store.records import Provenance, RunRecord
from conveyor.targets import FileTarget, flatten

log = logging.getLogger(__name__)

#: Untracked files that belong in the recorded diff: code and configuration, not outputs.
SOURCE_SUFFIXES = frozenset(
    {".py", ".pyi", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".sql", ".sh", ".r", ".ipynb", ".lock"}
)
#: An untracked file larger than this is not code: left out of the diff.
LARGEST_SOURCE = 1 << 20


def take(workdir: str, run_id: str) -> Provenance:
    """The record of a run started in ``workdir``."""
    env_hash, env_kind = environment_hash(Path(workdir))
    base = Provenance(
        run_id=run_id,
        python=platform.python_version(),
        platform=platform.platform(),
        env_hash=env_hash,
        env_kind=env_kind,
        created_at=time.time(),
    )
    head = git(["rev-parse", "--show-toplevel", "HEAD"], workdir)
    lines = head.strip().split("\n") if head else []
    if len(lines) != 2:  # not a working copy, or a repository without a commit yet
        return base
    top, commit = lines
    when = git(["log", "-1", "--format=%ct", commit], top)
    diff = working_diff(top)
    return dataclasses.replace(
        base,
        git_commit=commit,
        diff=diff or None,
        diff_hash=hashlib.sha256(diff.encode("utf-8", errors="surrogateescape")).hexdigest()
        if diff
        else None,
        source_date_epoch=float(when.strip()) if when and when.strip().isdigit() else None,
    )


def working_diff(top: str) -> str:
    """The working copy's changes against its commit, as one patch ``git apply`` takes."""
    parts = [git(["diff", "--binary", "--no-color", "--no-ext-diff", "HEAD"], top) or ""]
    listed = git(["ls-files", "--others", "--exclude-standard", "-z"], top) or ""
    for name in sorted(n for n in listed.split("\0") if n):
        path = Path(top, name)
        if path.suffix.lower() not in SOURCE_SUFFIXES or not path.is_file():
            continue
        if path.stat().st_size > LARGEST_SOURCE:
            continue
        parts.append(
            git(["diff", "--binary", "--no-color", "--no-index", "--", "/dev/null", name], top) or ""
        )
    return "".join(parts)


def record_run(store: Store, run: RunRecord) -> None:
    """Keep ``run``'s record. A record that cannot be taken is logged, never fatal: the run it
    describes matters more than its description."""
    try:
        store.record_provenance(take(run.workdir or os.getcwd(), run.id))
    except Exception as exc:  # the record is best effort: git, the file system, the store
        log.warning("run %s: could not keep its record (%s: %s)", run.id, type(exc).__name__, exc)


def record_inputs(
    store: Store, run_id: str, graph: Graph, only: Collection[str] | None = None, workdir: str = ""
) -> None:
    """Keep the inputs' fingerprints of each instance of ``graph`` (of ``only``) that executed in
    this run: per upstream instance, what its targets held (its successful attempt's recorded
    outputs, or, when it was skipped as done, its targets' fingerprints now), or the hash of
    the value it returned."""
    try:
        store.record_inputs(run_id, inputs_of(store, run_id, graph, only, workdir))
    except Exception as exc:
        log.warning(
            "run %s: could not keep its inputs' fingerprints (%s: %s)", run_id, type(exc).__name__, exc
        )


def inputs_of(
    store: Store, run_id: str, graph: Graph, only: Collection[str] | None = None, workdir: str = ""
) -> dict[str, list[dict[str, Any]]]:
    outputs = store.succeeded_outputs(run_id)
    executed = set(outputs)
    results = {i.id: i.result for i in store.instances(run_id) if i.result}
    found: dict[str, list[dict[str, Any]]] = {}
    for node in graph:
        if node.id not in executed or (only is not None and node.id not in only):
            continue
        fps: list[dict[str, Any]] = []
        for up_id in sorted(set(node.upstream)):
            up = graph[up_id]
            if up_id in outputs:
                fps += [{"from": up.label, **fp} for fp in outputs[up_id]]
            elif up.output is not None:
                fps += [{"from": up.label, **_now(t, workdir)} for t in flatten(up.output)]
            if up_id in results:
                fps.append({"from": up.label, "result": True, **_result(results[up_id])})
        fps += declared_inputs(node, workdir)
        found[node.id] = fps
    return found


#: What ``from`` says of an input the task declared (``@task(inputs=...)``), not an upstream's.
DECLARED = "inputs="


def declared_inputs(node: Node, root: str = "") -> list[dict[str, Any]]:
    """The fingerprints of the files ``node``'s task declares it reads (relative paths from
    ``root``, else the working directory), as they are now: one missing or unreachable is
    recorded as such, never fatal."""
    if not node.task.inputs:
        return []
    out: list[dict[str, Any]] = []
    try:
        paths = node.task.render_inputs(node.literals)
    except ConveyorError as exc:
        return [{"from": DECLARED, "path": ", ".join(node.task.inputs), "error": str(exc)}]
    for path in paths:
        where = os.path.join(root, path) if root and "://" not in path else path
        try:
            fp = file_fingerprint(where) if "://" in path or os.path.exists(where) else {"missing": True}
        except (ConveyorError, OSError) as exc:
            fp = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        out.append({"from": DECLARED, **fp, "path": path})
    return out


def _now(target: Any, workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, target.url) if isinstance(target, FileTarget) else ""
    if isinstance(target, FileTarget) and target.is_local and os.path.exists(path):
        fp = file_fingerprint(path)
        return {"target": target.describe(), "size": fp["size"], "sha256": fp["sha256"]}
    return {"target": target.describe()}


def _result(ref: str | None) -> dict[str, Any]:
    try:
        return file_fingerprint(ref) if ref else {}
    except (ConveyorError, OSError, ValueError):
        return {"path": ref}


def result_hashes(store: Store, run_id: str) -> dict[str, str]:
    """The SHA-256 of each instance's returned value (its artifact), where it can be read."""
    out = {}
    for i in store.instances(run_id):
        if i.result:
            fp = _result(i.result)
            if fp.get("sha256"):
                out[i.id] = str(fp["sha256"])
    return out
