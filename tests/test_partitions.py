"""Partitions of a graph: independent components apart, big ones sliced, every instance once."""

from __future__ import annotations

import random

import pytest

from conveyor.partitions import blocked, components, partition, run_state


def chain(prefix: str, n: int) -> dict[str, list[str]]:
    return {f"{prefix}{i}": ([f"{prefix}{i - 1}"] if i else []) for i in range(n)}


def test_independent_branches_are_separate_components() -> None:
    up = {**chain("a", 3), **chain("b", 2), "join": []}
    assert components(list(up), up) == [["a0", "a1", "a2"], ["b0", "b1"], ["join"]]


def test_a_fan_in_is_one_component() -> None:
    up = {"x": [], "y": [], "z": ["x", "y"]}
    assert components(list(up), up) == [["x", "y", "z"]]


def test_small_components_are_packed_and_big_ones_sliced_in_order() -> None:
    up = {**chain("a", 5), **chain("b", 2), **chain("c", 2)}
    parts = partition(list(up), up, bound=4)
    assert parts == [["a0", "a1", "a2", "a3"], ["a4"], ["b0", "b1", "c0", "c1"]]


@pytest.mark.parametrize("seed", range(20))
def test_every_instance_lands_in_exactly_one_bounded_partition(seed: int) -> None:
    rng = random.Random(seed)
    order = [f"n{i}" for i in range(rng.randint(1, 300))]
    up = {n: [order[j] for j in rng.sample(range(i), min(i, rng.randint(0, 2)))] for i, n in enumerate(order)}
    bound = rng.randint(1, 50)
    parts = partition(order, up, bound)
    flat = [n for p in parts for n in p]
    assert sorted(flat) == sorted(order) and len(flat) == len(set(flat))
    assert all(1 <= len(p) <= bound for p in parts)
    position = {n: i for i, n in enumerate(order)}
    for p in parts:  # each partition keeps the topological order
        assert [position[n] for n in p] == sorted(position[n] for n in p)


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one instance"):
        partition(["a"], {}, bound=0)


def test_partitions_needing_a_stuck_one_are_blocked_transitively() -> None:

    parts = {0: ("failed", []), 1: ("open", [0]), 2: ("open", [1]), 3: ("open", []), 4: ("done", [0])}
    assert blocked(parts) == [1, 2]
    assert blocked({0: ("done", []), 1: ("open", [0])}) == []


def test_a_run_ends_when_no_partition_is_open() -> None:

    assert run_state(["done", "open"]) is None
    assert run_state([]) is None
    assert run_state(["done", "done"]) == "succeeded"
    assert run_state(["done", "failed", "blocked"]) == "failed"
    assert run_state(["failed", "cancelled"]) == "cancelled"
