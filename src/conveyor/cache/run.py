"""The result cache as one run's driver uses it: a lookup before the run starts, a write after
each commit that ended attempts (``RunDriver`` calls ``start`` and ``committed``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from conveyor.cache.plan import Plan, plan
from conveyor.cache.restore import restore
from conveyor.cache.settings import enabled, project_root
from conveyor.core import Prior, State
from conveyor.errors import StoreError
from conveyor.graph import Graph, Node
from conveyor.provenance.fingerprints import environment_hash
from conveyor.store import Store
from conveyor.store.cache import CacheEntry
from conveyor.store.records import RunRecord
from conveyor.targets import FileTarget, flatten
from conveyor.targets.files import fingerprint

#: The states of an instance a (resumed) run still has to do: the cache is asked about these.
_TO_DO = (State.PENDING, State.FAILED, State.CANCELLED)


class RunCache:
    """One run's use of the result cache. ``reuse=False`` (``--no-cache``, ``--force``): nothing
    is taken from it, what executes is still recorded in it."""

    def __init__(self, store: Store, run: RunRecord, graph: Graph, *, reuse: bool) -> None:
        self.store = store
        self.run = run
        self.graph = graph
        self.reuse = reuse
        self.root = project_root(run.workdir)
        self.plan = Plan()

    @classmethod
    def open(cls, store: Store, run: RunRecord, graph: Graph, *, reuse: bool) -> RunCache | None:
        """The run's cache, or None when its project turned the cache off (``[cache]``)."""
        if not enabled(project_root(run.workdir)):
            return None
        return cls(store, run, graph, reuse=reuse)

    def start(
        self,
        own: Collection[str] | None,
        prior: Mapping[str, Prior],
        done: frozenset[str],
        results: dict[str, str | None],
    ) -> tuple[frozenset[str], dict[str, str]]:
        """Before the run starts: the instances whose targets make them done (without those the
        cache found stale), and those that reuse an entry instead of executing, with the run that
        made it; their results go into ``results`` for the instances below them. Each instance's
        key is recorded, and which run made what it reuses or what its existing targets hold."""
        candidates = {
            n.id
            for n in self.graph
            if (own is None or n.id in own) and (n.id not in prior or prior[n.id].state in _TO_DO)
        }
        env, _ = environment_hash(self.root)
        entries = self.store.cache_entries(list(self.graph.nodes)) if candidates else []
        finished = {iid for iid, pr in prior.items() if pr.state.done}
        base = self.run.workdir

        def holds(node: Node, read: bool) -> list[dict[str, Any]] | None:
            return _holds(node, read, base)

        def usable(node: Node, entry: CacheEntry, in_place: bool) -> bool:
            return self.reuse and _usable(node, entry, in_place, base)

        self.plan = p = plan(self.graph, candidates, done, finished, entries, env, self.root, holds, usable)
        reused = {iid: entry.run_id for iid, entry in p.reuse.items()}
        results.update({iid: entry.result for iid, entry in p.reuse.items()})
        if self.reuse:
            done = frozenset(done - p.stale - set(reused))
        made_by = {**reused, **{iid: entry.run_id for iid, entry in p.kept.items()}}
        marks = [(iid, p.keys[iid], made_by.get(iid)) for iid in candidates if iid in p.keys]
        self.store.mark_cached(self.run.id, marks)
        return done, reused

    def committed(self, ended: Sequence[dict[str, Any]], results: Mapping[str, str | None]) -> None:
        """After a commit: record what its succeeded attempts made, under their keys."""
        keys, now = self.plan.keys, time.time()
        entries = []
        for end in ended:
            iid = end["instance_id"]
            if end["state"] != "succeeded" or iid not in keys:
                continue
            outputs = [self._absolute(o) for o in json.loads(end.get("outputs") or "[]")]
            if self.graph[iid].output is not None and not outputs:
                continue  # its targets' content is not known: nothing to check a reuse against
            entries.append(CacheEntry(keys[iid], self.run.id, iid, results.get(iid), outputs, now))
        try:
            self.store.put_cache_entries(entries)
        except StoreError:
            pass  # the store went away after the commit: these execute again next time, nothing is lost

    def _absolute(self, fp: dict[str, Any]) -> dict[str, Any]:
        """A fingerprint whose local target is named from the run's folder (its tasks' relative
        paths start there): another checkout finds the file by it."""
        where = str(fp.get("target", ""))
        if "://" in where or os.path.isabs(where) or not self.run.workdir:
            return fp
        return {**fp, "target": os.path.join(self.run.workdir, where)}


def _holds(node: Node, read: bool, base: str) -> list[dict[str, Any]] | None:
    """What the node's (local file) targets hold now; None if one of them is missing. Without
    ``read``, a stat of each (a large input written by hand is not read on every run).
    Relative paths start at ``base``, the run's folder."""
    targets = [FileTarget(os.path.join(base, t.url)) for t in flatten(node.output)] if node.output else []  # type: ignore[attr-defined]
    if not targets or not all(t.exists() for t in targets):
        return None
    if read:
        return [fingerprint(t) for t in targets]
    stats = [os.stat(t.url) for t in targets]
    return [{"size": st.st_size, "mtime": st.st_mtime_ns} for st in stats]


def _usable(node: Node, entry: CacheEntry, in_place: bool, base: str) -> bool:
    """Can ``node`` take ``entry``? Its targets hold it already (``in_place``: the plan compared
    their content) or can be copied from where the entry says; its result is still there."""
    try:
        return restore(node, entry, in_place=in_place, base=base)
    except OSError:
        return False
