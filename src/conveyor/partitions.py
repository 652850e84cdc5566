"""Splitting a run's graph into partitions that schedulers can lease one by one.

Weakly connected components are independent: each can be driven by its own scheduler with no
coordination. Small components are packed together up to ``bound`` instances; a component
larger than ``bound`` is cut into slices of its topological order, and the dependencies that
cross a cut resolve through the store. The result is deterministic for a given graph.

Not wired in yet: the several-scheduler mode (partition leases on PostgreSQL) builds on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: The default largest partition: big enough that a scheduler's turn has work to batch.
BOUND = 512


def components(order: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The weakly connected components, each in the given (topological) order."""
    parent = {n: n for n in order}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for n in order:
        for u in upstream.get(n, ()):
            a, b = root(n), root(u)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for n in order:
        groups.setdefault(root(n), []).append(n)
    return list(groups.values())


def partition(
    order: Sequence[str], upstream: Mapping[str, Sequence[str]], bound: int = BOUND
) -> list[list[str]]:
    """Partitions of at most ``bound`` instances, each in topological order.

    ``order`` must be a topological order of the graph (as ``Graph`` keeps it).
    """
    if bound < 1:
        raise ValueError(f"a partition holds at least one instance, got bound={bound}")
    position = {n: i for i, n in enumerate(order)}
    out: list[list[str]] = []
    packed: list[str] = []
    for comp in components(order, upstream):
        if len(comp) > bound:
            out += [comp[i : i + bound] for i in range(0, len(comp), bound)]
        elif len(packed) + len(comp) > bound:
            out.append(sorted(packed, key=position.__getitem__))
            packed = list(comp)
        else:
            packed += comp
    if packed:
        out.append(sorted(packed, key=position.__getitem__))
    return out
