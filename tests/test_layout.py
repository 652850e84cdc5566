"""The layered layout of a run's graph: what a reader of the drawing sees. Left to right along
the edges, no box over another, few crossings, long labels kept whole, tasks grouped."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field

import pytest

import conveyor.layout
from conveyor.layout import Box, Drawing, Placed, graph_of, layout, tally, worst


def boxes(*ids: str) -> list[Box]:
    return [Box(i, f"{i}()") for i in ids]


def by_id(d: Drawing) -> dict[str, Placed]:
    return {p.id: p for p in d.nodes}


def assert_drawable(d: Drawing, edges: list[tuple[str, str]]) -> None:
    """What any drawing must be: every edge left to right, from its source's right side to its
    target's left side; no two boxes overlap; everything inside the drawing."""
    at = by_id(d)
    for s, t in edges:
        if s == t:
            continue
        a, b = at[s], at[t]
        assert a.layer < b.layer, f"{s} -> {t} goes from layer {a.layer} to {b.layer}"
        assert a.x + a.w < b.x
    for e in d.edges:
        a, b = at[e.source], at[e.target]
        assert e.points[0] == (a.x + a.w, a.y + a.h / 2)
        assert e.points[-1] == (b.x, b.y + b.h / 2)
        for x, y in e.points[1:-1]:  # a long edge runs through the gaps, not through boxes
            assert not any(p.x < x < p.x + p.w and p.y < y < p.y + p.h for p in d.nodes), (x, y)
    columns: dict[int, list[Placed]] = {}
    for p in d.nodes:
        columns.setdefault(p.layer, []).append(p)
        assert p.x >= 0 and p.x + p.w <= d.width and p.y >= 0 and p.y + p.h <= d.height
    for column in columns.values():
        column.sort(key=lambda p: p.y)
        for upper, lower in itertools.pairwise(column):
            assert upper.y + upper.h < lower.y, f"{upper.id} overlaps {lower.id}"
    spans = sorted((min(p.x for p in c), max(p.x + p.w for p in c)) for c in columns.values())
    for (_, right), (left, _) in itertools.pairwise(spans):
        assert right < left, "two columns overlap"


def crossings(d: Drawing) -> int:
    """Crossings seen on the drawing: pairs of edge segments between the same two adjacent
    columns whose ends are in opposite orders."""
    at = by_id(d)
    segments: dict[int, list[tuple[float, float]]] = {}
    for e in d.edges:
        ys = [e.points[0][1], *(y for _, y in e.points[1:-1:2]), e.points[-1][1]]
        for k, (y0, y1) in enumerate(itertools.pairwise(ys), start=at[e.source].layer):
            segments.setdefault(k, []).append((y0, y1))
    return sum(
        1
        for column in segments.values()
        for (a, b), (c, e) in itertools.combinations(column, 2)
        if (a - c) * (b - e) < 0
    )


def random_dag(n: int, seed: int, reach: int = 30) -> tuple[list[Box], list[tuple[str, str]]]:
    rng = random.Random(seed)
    nodes = [Box(f"n{i}", f"task{i % 5}(i={i})") for i in range(n)]
    edges = []
    for i in range(1, n):
        for _ in range(rng.randint(0, 2)):
            edges.append((f"n{rng.randrange(max(0, i - reach), i)}", f"n{i}"))
    return nodes, edges


# -- layers, overlaps, edges -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_a_random_graph_reads_left_to_right_without_overlaps(seed: int) -> None:
    nodes, edges = random_dag(150, seed)
    d = layout(nodes, edges)
    assert_drawable(d, edges)
    assert len(d.nodes) == 150 and len(d.edges) == len(set(edges))


def test_a_source_sits_next_to_its_first_consumer_and_long_edges_pass_between_boxes() -> None:
    # a -> b -> c -> d, and config only feeds d: drawn next to d, not at the far left
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("config", "d"), ("a", "d")]
    d = layout(boxes("a", "b", "c", "d", "config"), edges)
    at = by_id(d)
    assert [at[x].layer for x in "abcd"] == [0, 1, 2, 3] and at["config"].layer == 2
    assert_drawable(d, edges)
    [long] = [e for e in d.edges if (e.source, e.target) == ("a", "d")]
    assert len(long.points) == 6  # in and out of each of the two columns it crosses


def test_ordering_removes_the_crossings_of_a_known_graph() -> None:
    # given in an order that crosses every pair: a->y, b->x; and a tree listed leaves-scrambled
    d = layout(boxes("a", "b", "x", "y"), [("a", "y"), ("b", "x")])
    assert crossings(d) == 0 == d.crossings
    tree = [("r", "p"), ("r", "q"), ("p", "p1"), ("p", "p2"), ("q", "q1"), ("q", "q2")]
    d = layout(boxes("r", "q", "p", "p1", "q1", "p2", "q2"), tree)
    assert crossings(d) == 0 == d.crossings
    at = by_id(d)
    upper, lower = ("p", "q") if at["p"].y < at["q"].y else ("q", "p")
    # each parent's children together, on its side
    assert max(at[f"{upper}1"].y, at[f"{upper}2"].y) < min(at[f"{lower}1"].y, at[f"{lower}2"].y)


def test_ordering_reduces_crossings_on_random_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    graphs = [random_dag(120, seed, reach=6) for seed in range(5)]
    ordered = [layout(nodes, edges) for nodes, edges in graphs]
    for d in ordered:
        assert d.crossings == crossings(d)  # the layout's count is what the drawing shows
    monkeypatch.setattr(conveyor.layout, "SWEEPS", 0)  # each column in the order the boxes came
    unordered = [layout(nodes, edges).crossings for nodes, edges in graphs]
    assert all(d.crossings <= u for d, u in zip(ordered, unordered, strict=True))
    assert sum(d.crossings for d in ordered) < sum(unordered) / 2


def test_a_fan_out_and_fan_in_is_centred() -> None:
    mids = [f"m{i}" for i in range(9)]
    edges = [("src", m) for m in mids] + [(m, "sink") for m in mids]
    d = layout(boxes("src", *mids, "sink"), edges)
    at = by_id(d)
    centre = [at[m].y + at[m].h / 2 for m in mids]
    middle = (min(centre) + max(centre)) / 2
    for end in ("src", "sink"):
        assert abs(at[end].y + at[end].h / 2 - middle) < 1
    assert_drawable(d, edges)


def test_cycles_between_groups_are_drawn_all_the_same() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d")]
    d = layout(boxes("a", "b", "c", "d"), edges)
    at = by_id(d)
    assert len(d.nodes) == 4 and len(d.edges) == 4  # the self-loop is not drawn
    [back] = [e for e in d.edges if (e.source, e.target) == ("c", "a")]
    assert back.points[0] == (at["c"].x, at["c"].y + at["c"].h / 2)  # leaves c on its left side
    assert back.points[-1] == (at["a"].x + at["a"].w, at["a"].y + at["a"].h / 2)


def test_long_labels_are_kept_whole_in_a_box_of_bounded_width() -> None:
    long = "transform(path=/data/landing/2026/11/22/region=eu-west-1/part-0000.parquet)"
    d = layout([Box("a", "a()"), Box("b", long)], [("a", "b")])
    short, wide = d.nodes
    assert wide.label == long
    assert short.w < wide.w < len(long) * 4  # wider for a longer label, but not as wide as all of it


def test_mistakes_of_the_caller_are_named() -> None:
    with pytest.raises(ValueError, match="'a' is given twice"):
        layout(boxes("a", "a"), [])
    with pytest.raises(ValueError, match="'a' -> 'zz'"):
        layout(boxes("a"), [("a", "zz")])
    empty = layout([], [])
    assert empty.nodes == () and empty.edges == () and empty.width > 0


# -- size -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["chain", "independent", "fan", "random"])
def test_two_thousand_boxes_are_laid_out(shape: str) -> None:
    n = 2000
    ids = [f"n{i}" for i in range(n)]
    if shape == "chain":
        edges = list(itertools.pairwise(ids))
    elif shape == "independent":
        edges = []
    elif shape == "fan":
        edges = [(ids[0], i) for i in ids[1:-1]] + [(i, ids[-1]) for i in ids[1:-1]]
    else:
        _, edges = random_dag(n, seed=7)
    started = time.perf_counter()
    d = layout([Box(i, f"step(i={i})") for i in ids], edges)
    took = time.perf_counter() - started
    print(f"\n{shape}: {n} boxes, {len(edges)} edges laid out in {took * 1000:.0f} ms")
    assert len(d.nodes) == n and len(d.edges) == len(set(edges))
    layers = {p.layer for p in d.nodes}
    assert len(layers) == {"chain": n, "independent": 1, "fan": 3}.get(shape, len(layers))
    if shape != "random":
        assert_drawable(d, edges)


# -- grouping ---------------------------------------------------------------------------------------
@dataclass
class Inst:
    id: str
    task: str
    state: str = "pending"
    upstream: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.task}({self.id})"


def test_instances_of_a_task_are_one_box_with_counts_and_the_worst_state() -> None:
    runs = [Inst("s", "split", "succeeded")]
    states = ["succeeded", "running", "failed", "succeeded", "retry_wait"]
    runs += [Inst(f"w{i}", "work", st, ["s"]) for i, st in enumerate(states)]
    runs += [
        Inst(f"c{i}", "check", "pending", [f"w{i}", "s"]) for i in range(5)
    ]  # work -> check, split -> check
    runs += [Inst("j", "join", "pending", [f"c{i}" for i in range(5)])]
    nodes, edges = graph_of(runs, grouped=True)
    assert [(b.id, b.label) for b in nodes] == [
        ("task:split", "split (1)"),
        ("task:work", "work (5)"),
        ("task:check", "check (5)"),
        ("task:join", "join (1)"),
    ]
    assert edges == [  # once each, however many instances they join
        ("task:split", "task:work"),
        ("task:work", "task:check"),
        ("task:split", "task:check"),
        ("task:check", "task:join"),
    ]
    counts = tally(runs, grouped=True)
    assert counts["task:work"] == {"succeeded": 2, "running": 1, "failed": 1, "retry_wait": 1}
    assert worst(counts["task:work"]) == "failed"
    assert worst(counts["task:split"]) == "succeeded"
    assert worst({"succeeded": 3, "skipped": 1, "cancelled": 1}) == "cancelled"
    assert worst({"succeeded": 3, "ready": 1, "retry_wait": 1}) == "retry_wait"
    d = layout(nodes, edges)
    assert [p.layer for p in d.nodes] == [0, 1, 2, 3]


def test_a_chain_of_one_task_is_one_box_and_instances_stay_apart_ungrouped() -> None:
    chain = [Inst("a0", "step", "succeeded")] + [
        Inst(f"a{i}", "step", "running", [f"a{i - 1}"]) for i in range(1, 4)
    ]
    nodes, edges = graph_of(chain, grouped=True)
    assert [b.id for b in nodes] == ["task:step"] and edges == []  # no edge from a group to itself
    assert tally(chain, grouped=True) == {"task:step": {"succeeded": 1, "running": 3}}
    nodes, edges = graph_of(chain, grouped=False)
    assert [b.label for b in nodes] == ["step(a0)", "step(a1)", "step(a2)", "step(a3)"]
    assert edges == [("a0", "a1"), ("a1", "a2"), ("a2", "a3")]
    assert tally(chain, grouped=False)["a1"] == {"running": 1}
