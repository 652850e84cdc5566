"""Splitting a run's graph into partitions that schedulers can lease one by one.

Weakly connected components are independent: each can be driven by its own scheduler with no
coordination. Small components are packed together up to ``bound`` instances; a component
larger than ``bound`` is cut into slices of its topological order, and the dependencies that
cross a cut resolve through the store. The result is deterministic for a given graph.

How partitions end is decided here too (``blocked``, ``run_state``); the store only applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

#: The default largest partition: big enough that a scheduler's turn has work to batch.
BOUND = 512

#: Partition states that let nothing downstream of them run.
STUCK = frozenset(("failed", "blocked", "cancelled"))


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


def blocked(parts: Mapping[int, tuple[str, Sequence[int]]]) -> list[int]:
    """The open partitions that need a stuck one, directly or through others: they can never
    run. ``parts``: each partition's number -> (state, the partitions it needs)."""
    stuck = {n for n, (state, _) in parts.items() if state in STUCK}
    out = []
    for n in sorted(parts):  # a partition needs only lower numbers
        state, needs = parts[n]
        if state == "open" and stuck.intersection(needs):
            stuck.add(n)
            out.append(n)
    return out


def run_state(states: Iterable[str]) -> str | None:
    """A run's final state from its partitions' states; None while one is open."""
    seen = set(states)
    if not seen or "open" in seen:
        return None
    if seen == {"done"}:
        return "succeeded"
    return "cancelled" if "cancelled" in seen else "failed"
