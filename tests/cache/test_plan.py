"""The cache's decisions, without a store or a process: keys that chain, and what is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import output, pipeline, task
from conveyor.cache.plan import Plan, plan
from conveyor.graph import Graph, Node
from conveyor.store.cache import CacheEntry


@task(output="raw.txt")
def raw() -> None:
    output().write_text("raw")


@task
def clean(r: Any) -> int:
    return 1


@task
def side() -> int:
    return 2


@task
def report(c: int, s: int) -> str:
    return f"{c} {s}"


@pipeline
def main() -> None:
    report(clean(raw()), side())


def ids(graph: Graph) -> dict[str, str]:
    return {n.task.name: n.id for n in graph}


def decide(
    graph: Graph,
    root: Path,
    entries: list[CacheEntry],
    *,
    env: str = "e1",
    done: frozenset[str] = frozenset(),
) -> Plan:
    def holds(node: Node, read: bool) -> list[dict[str, Any]] | None:
        return [{"sha256": "RAW"}] if node.task.name == "raw" else None

    def usable(node: Node, entry: CacheEntry, in_place: bool) -> bool:
        return entry.result != "gone"

    return plan(graph, set(graph.nodes), done, set(), entries, env, root, holds, usable)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Graph:
    monkeypatch.chdir(tmp_path)
    return main.build({})


def test_keys_chain_through_upstream_and_see_the_environment(graph: Graph, tmp_path: Path) -> None:
    first = decide(graph, tmp_path, []).keys
    assert len(set(first.values())) == 4
    assert decide(graph, tmp_path, []).keys == first  # stable
    other_env = decide(graph, tmp_path, [], env="e2").keys
    assert not set(other_env.values()) & set(first.values())


def test_reused_only_below_what_will_not_execute(graph: Graph, tmp_path: Path) -> None:
    keys, i = decide(graph, tmp_path, []).keys, ids(graph)
    made = [CacheEntry(keys[i[n]], "r1", i[n], f"/a/{n}", [], 1.0) for n in ("clean", "side", "report")]
    made.append(CacheEntry(keys[i["raw"]], "r1", i["raw"], None, [{"sha256": "RAW"}], 1.0))
    every = decide(graph, tmp_path, made, done=frozenset({i["raw"]}))
    assert set(every.reuse) == set(graph.nodes) - {i["raw"]} and not every.stale
    assert set(every.kept) == {i["raw"]}  # its target holds what the entry says: skipped, as ever
    # side's result is gone: side executes, so report (below it) executes too, though its entry is there
    gone = [
        e if e.instance_id != i["side"] else CacheEntry(e.key, "r1", e.instance_id, "gone", [], 1.0)
        for e in made
    ]
    partial = decide(graph, tmp_path, gone, done=frozenset({i["raw"]}))
    assert set(partial.reuse) == {i["clean"]}


def test_targets_made_by_other_code_are_stale_and_hand_made_ones_count_by_content(
    graph: Graph, tmp_path: Path
) -> None:
    keys, i = decide(graph, tmp_path, []).keys, ids(graph)
    old = CacheEntry("an-older-key", "r0", i["raw"], None, [{"sha256": "RAW"}], 1.0)
    stale = decide(graph, tmp_path, [old], done=frozenset({i["raw"]}))
    assert stale.stale == {i["raw"]} and not stale.reuse and not stale.kept
    same_bytes = CacheEntry(keys[i["raw"]], "r1", i["raw"], None, [{"sha256": "RAW"}], 2.0)
    both = decide(graph, tmp_path, [old, same_bytes], done=frozenset({i["raw"]}))
    assert not both.stale and both.kept[i["raw"]].run_id == "r1"  # this key made these bytes too
    unknown = CacheEntry(keys[i["raw"]], "r0", i["raw"], None, [{"sha256": "OTHER"}], 1.0)
    by_hand = decide(graph, tmp_path, [unknown], done=frozenset({i["raw"]}))
    assert not by_hand.stale and not by_hand.reuse and not by_hand.kept
    assert by_hand.keys[i["clean"]] != keys[i["clean"]]  # what raw.txt holds changed the key below
    assert by_hand.keys[i["side"]] == keys[i["side"]]
