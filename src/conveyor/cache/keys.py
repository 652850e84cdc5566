"""A task instance's cache key: a hash of what decides its outputs.

    key = sha256(task name, code hash, parameters, each upstream's digest, environment hash)

An upstream's digest is its own key, so an edit anywhere upstream changes every key below it; an
upstream whose targets were written outside Conveyor (no entry knows their content) gives the
hash of that content instead, so editing an input file by hand changes the keys below it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conveyor.graph import Node
from conveyor.provenance.fingerprints import code_hash
from conveyor.tasks import TaskDef


def task_code(task: TaskDef, root: Path) -> str:
    """The hash of the code a task runs: its function (and what it calls in the project), or
    its command with the content of every project file the command names (a script)."""
    if task.fn is not None:
        return code_hash(task.fn, root)
    words = [task.command] if isinstance(task.command, str) else list(task.command)
    digest = hashlib.sha256()
    for word in [*words, *task.options]:
        digest.update(word.encode() + b"\0")
        for token in word.split():
            path = root / token
            try:
                if path.is_file() and path.resolve().is_relative_to(root):
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
            except (OSError, ValueError):
                continue
    return digest.hexdigest()


def instance_key(node: Node, code: str, inputs: Sequence[str], env: str) -> str:
    """The key of ``node`` given its task's code hash, its upstream digests (in the node's
    upstream order) and the environment hash."""
    literals = {k: v for k, v in node.params_json.items() if not _upstream_ref(v)}
    body = {"task": node.task.name, "code": code, "params": literals, "inputs": list(inputs), "env": env}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def content_digest(fingerprints: Sequence[dict[str, Any]]) -> str:
    """The digest of targets' content, for an upstream no entry knows (written by hand): their
    hashes, or their sizes and modification times when they were not read."""
    text = "\n".join(str(f.get("sha256") or (f.get("size"), f.get("mtime"))) for f in fingerprints)
    return "content:" + hashlib.sha256(text.encode()).hexdigest()


def _upstream_ref(value: Any) -> bool:
    return isinstance(value, dict) and "$upstream" in value
