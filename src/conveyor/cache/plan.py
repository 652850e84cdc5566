"""Which task instances of a run take a cache entry instead of executing: decided once, before
the run starts, from every key and every entry of the run's instances (one query).

The rules, for an instance still to do:
- its targets exist and hold what an entry of the same key recorded: skipped as targets always
  made it (nothing is touched), and it says which run made them;
- its targets exist and hold what an entry of another key recorded: stale (its code, an input or
  the environment changed since): it executes, whatever Luigi's rule would say;
- its targets exist and no entry knows their content (written by hand, or before the cache): it is
  done as targets always made a task done; its content, not its key, feeds the keys below it;
- its targets are missing (a checkout elsewhere, a new path) and an entry of its key still finds
  its outputs where it recorded them, with the same content: they are copied there, reused;
- it has no targets and an entry of its key has a result whose artifact is still there: reused.
Tasks whose targets are not local files (tables, object stores) keep targets' rule alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.cache.keys import content_digest, instance_key, task_code
from conveyor.graph import Graph, Node
from conveyor.store.cache import CacheEntry
from conveyor.targets import FileTarget, flatten

#: What a node's targets hold now, None if one is missing: with ``True``, their content's hashes
#: (``targets.files.fingerprint``); with ``False``, only their sizes and modification times.
Holds = Callable[[Node, bool], list[dict[str, Any]] | None]
#: Can the node take the entry (``True``: its targets hold it already)? Puts its outputs in place.
Usable = Callable[[Node, CacheEntry, bool], bool]


@dataclass(slots=True)
class Plan:
    keys: dict[str, str] = field(default_factory=dict)  # every cacheable instance's key
    reuse: dict[str, CacheEntry] = field(default_factory=dict)  # instance -> the entry it takes
    kept: dict[str, CacheEntry] = field(default_factory=dict)  # skipped: its targets hold this entry
    stale: set[str] = field(default_factory=set)  # targets exist, made by other code or inputs


def cacheable(node: Node) -> bool:
    """Can the cache check this node's outputs? No targets (a result), or local files only."""
    if node.output is None:
        return True
    return all(t.__class__ is FileTarget and t.is_local for t in flatten(node.output))


def plan(
    graph: Graph,
    candidates: Collection[str],
    done: Collection[str],
    finished: Collection[str],
    entries: Sequence[CacheEntry],
    env: str,
    root: Path,
    holds: Holds,
    usable: Usable,
) -> Plan:
    """Decide for the ``candidates`` (instances still to do; ``done`` among them: their targets
    exist) which reuse an entry and which are stale; and every instance's key. ``finished``:
    instances the run had done before (a resumed run's)."""
    by_instance: dict[str, list[CacheEntry]] = {}
    for e in entries:
        by_instance.setdefault(e.instance_id, []).append(e)
    codes: dict[str, str] = {}
    digests: dict[str, str] = {}
    out = Plan()
    # Instances that will not execute: an instance is reused only below these (a task never ends
    # before its upstream, reused or not).
    settled = set(finished)
    for node in graph:
        if not cacheable(node) or any(u not in digests for u in node.upstream):
            continue  # a table's or an object store's content is not seen: nothing below is keyed
        code = codes.get(node.task.name)
        if code is None:
            code = codes[node.task.name] = task_code(node.task, root)
        key = out.keys[node.id] = digests[node.id] = instance_key(
            node, code, [digests[u] for u in node.upstream], env
        )
        if node.id not in candidates:
            continue
        mine = by_instance.get(node.id, [])
        if node.id in done:
            now = holds(node, bool(mine))  # no entry: no content to compare, a stat is enough
            if now is None:
                continue
            # the same bytes may have been made under several keys (an environment that changed
            # nothing): this key's entry first
            made = next((e for e in sorted(mine, key=lambda e: e.key != key) if _same(e.outputs, now)), None)
            if made is None:
                digests[node.id] = content_digest(now)  # written by hand: what it holds counts
            elif made.key != key:
                out.stale.add(node.id)
                continue
            elif settled.issuperset(node.upstream) and usable(node, made, True):
                out.kept[node.id] = made
            settled.add(node.id)  # reused, or done by its targets
            continue
        hit = next((e for e in mine if e.key == key), None)
        if hit is not None and settled.issuperset(node.upstream) and usable(node, hit, False):
            out.reuse[node.id] = hit
            settled.add(node.id)
    return out


def _same(recorded: Sequence[dict[str, Any]], now: Sequence[dict[str, Any]]) -> bool:
    """Do the targets hold what the entry recorded (the same content, in the same order)?"""
    return len(recorded) == len(now) and all(
        r.get("sha256") and r.get("sha256") == n.get("sha256") for r, n in zip(recorded, now, strict=True)
    )
