"""A run's graph laid out for drawing: a layered DAG, left to right. Pure: boxes and edges in,
coordinates out; no I/O and no third-party layout library.

    layers   a box's layer is the length of the longest path to it from a source; a source sits
             just before its first consumer. An edge that would close a cycle (possible between
             groups of instances) is laid out as if reversed.
    dummies  an edge that spans several layers passes through a point in each layer it crosses,
             so that it runs through the gaps between boxes.
    order    within each layer, a few sweeps of the barycentre heuristic, each followed by swaps
             of neighbours that then cross fewer edges; the order with the fewest crossings wins.
    place    x by layer (each column as wide as its widest box); y by order: each box is pulled
             toward the mean of its neighbours', never closer to the next than the gap.
    route    each edge a polyline from its source's right side to its target's left side.

Grouping (``graph_of``, ``tally``): a run's instances drawn one box per task, with the count of
instances in each state and the group's "worst" state.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: A box's height in px: one task instance, and a group of them (two lines: the name, the counts).
NODE_H = 30.0
GROUP_H = 44.0
#: A label's width is estimated as CHAR_W px a character, plus PAD (the state's glyph, margins);
#: a box is between MIN_W and MAX_W wide (a longer label is cut when drawn; ``label`` keeps it).
CHAR_W = 6.6
PAD = 44.0
MIN_W = 80.0
MAX_W = 260.0
#: The gap between columns, between boxes of a column, around an edge passing through a column,
#: and around the drawing.
LAYER_GAP = 56.0
NODE_GAP = 14.0
EDGE_GAP = 6.0
MARGIN = 16.0
#: Sweeps of the barycentre heuristic (each one down and up), and passes placing the boxes' y.
SWEEPS = 3
PASSES = 4
#: Passes of swapping neighbours after each sweep; a pair with more pairs of segments to compare
#: than TRANSPOSE_WORK is left as it is.
TRANSPOSES = 2
TRANSPOSE_WORK = 400
#: Points added for long edges, at most; an edge beyond this is drawn straight across.
DUMMY_BUDGET = 10_000

#: Instance states from the worst to the best: a group shows the worst state any member is in.
WORST = ("failed", "running", "retry_wait", "ready", "pending", "cancelled", "skipped", "succeeded")


@dataclass(frozen=True, slots=True)
class Box:
    """A box to place: ``w`` 0 means "as wide as the label needs", within MIN_W and MAX_W."""

    id: str
    label: str
    w: float = 0.0
    h: float = NODE_H


@dataclass(frozen=True, slots=True)
class Placed:
    """A placed box: (x, y) is its top left corner, in px from the drawing's."""

    id: str
    label: str
    layer: int
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class Route:
    """An edge: a polyline from the source's right side to the target's left side."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Drawing:
    nodes: tuple[Placed, ...]  # in the order of the boxes given
    edges: tuple[Route, ...]  # in the order of the edges given, without duplicates and self-loops
    width: float
    height: float
    layers: int
    crossings: int  # crossings between adjacent layers left after ordering


def width_for(label: str) -> float:
    """The width of a box showing ``label``."""
    return min(MAX_W, max(MIN_W, PAD + CHAR_W * len(label)))


def layout(boxes: Sequence[Box], edges: Iterable[tuple[str, str]]) -> Drawing:
    """Lay out ``boxes`` (ideally in a topological order: it breaks cycles and ties) with
    ``edges`` (source id, target id). Raises ValueError for a duplicate box or an unknown id."""
    index: dict[str, int] = {}
    for i, box in enumerate(boxes):
        if index.setdefault(box.id, i) != i:
            raise ValueError(f"box {box.id!r} is given twice")
    pairs: dict[tuple[int, int], None] = {}
    for source, target in edges:
        if source not in index or target not in index:
            raise ValueError(f"edge {source!r} -> {target!r} names a box that is not given")
        if source != target:
            pairs[index[source], index[target]] = None
    n = len(boxes)
    order = _acyclic_order(n, pairs)
    rank = [0] * n
    for k, v in enumerate(order):
        rank[v] = k
    forward = [(s, t) if rank[s] < rank[t] else (t, s) for s, t in pairs]
    layer = _layers(n, order, forward)
    g = _Layered(layer, forward)
    crossings = g.order(rank)
    widths = [round(box.w or width_for(box.label), 1) for box in boxes]
    heights = [box.h for box in boxes] + [0.0] * (len(g.layer) - n)
    centre = g.place(heights)
    columns = max(layer, default=-1) + 1
    col_w = [0.0] * columns
    for v in range(n):
        col_w[layer[v]] = max(col_w[layer[v]], widths[v])
    col_x = [MARGIN] * columns
    for k in range(1, columns):
        col_x[k] = col_x[k - 1] + col_w[k - 1] + LAYER_GAP
    top = min((c - h / 2 for c, h in zip(centre, heights, strict=True)), default=0.0)
    bottom = max((c + h / 2 for c, h in zip(centre, heights, strict=True)), default=0.0)
    shift = MARGIN - top
    placed = [
        Placed(
            box.id,
            box.label,
            layer[v],
            round(col_x[layer[v]] + (col_w[layer[v]] - widths[v]) / 2, 1),
            round(centre[v] - box.h / 2 + shift, 1),
            widths[v],
            box.h,
        )
        for v, box in enumerate(boxes)
    ]
    routes = []
    for s, t in pairs:
        a, b = (s, t) if rank[s] < rank[t] else (t, s)
        points = [(placed[a].x + placed[a].w, placed[a].y + placed[a].h / 2)]
        for d in g.through.get((a, b), ()):
            k, y = g.layer[d], round(centre[d] + shift, 1)
            points += [(round(col_x[k], 1), y), (round(col_x[k] + col_w[k], 1), y)]
        points.append((placed[b].x, placed[b].y + placed[b].h / 2))
        if a != s:  # against the layers: from the source's left side to the target's right
            points.reverse()
        routes.append(Route(boxes[s].id, boxes[t].id, tuple(points)))
    width = round(col_x[-1] + col_w[-1] + MARGIN, 1) if columns else 2 * MARGIN
    height = round(bottom + shift + MARGIN, 1) if n else 2 * MARGIN
    return Drawing(tuple(placed), tuple(routes), width, height, columns, crossings)


# -- layers -------------------------------------------------------------------------------------
def _acyclic_order(n: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    """A topological order preferring the boxes' own order. When only cycles are left, the box
    waiting for the fewest others comes next: its edges from boxes after it are laid out reversed.
    (Only groups of instances have cycles, and few boxes: the search for it is a plain scan.)"""
    out: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for s, t in pairs:
        out[s].append(t)
        indegree[t] += 1
    ready = [v for v in range(n) if indegree[v] == 0]
    heapq.heapify(ready)
    done = [False] * n
    order: list[int] = []
    while len(order) < n:
        if not ready:
            ready.append(min((v for v in range(n) if not done[v]), key=lambda v: (indegree[v], v)))
        v = heapq.heappop(ready)
        if done[v]:
            continue
        done[v] = True
        order.append(v)
        for t in out[v]:
            indegree[t] -= 1
            if indegree[t] == 0 and not done[t]:
                heapq.heappush(ready, t)
    return order


def _layers(n: int, order: list[int], forward: list[tuple[int, int]]) -> list[int]:
    """Longest-path layers; then each source moves right, next to its nearest consumer."""
    succ: list[list[int]] = [[] for _ in range(n)]
    has_pred = [False] * n
    for s, t in forward:
        succ[s].append(t)
        has_pred[t] = True
    layer = [0] * n
    for v in order:
        for t in succ[v]:
            if layer[t] <= layer[v]:
                layer[t] = layer[v] + 1
    for v in range(n):
        if not has_pred[v] and succ[v]:
            layer[v] = min(layer[t] for t in succ[v]) - 1
    return layer


class _Layered:
    """The layered graph: the boxes (0..n-1) and a dummy point for each layer a long edge crosses,
    with the segments between adjacent layers."""

    def __init__(self, layer: list[int], forward: list[tuple[int, int]]) -> None:
        self.layer = list(layer)
        self.up: list[list[int]] = [[] for _ in layer]  # neighbours in the layer before
        self.down: list[list[int]] = [[] for _ in layer]  # neighbours in the layer after
        self.through: dict[tuple[int, int], list[int]] = {}  # a long edge's dummies, in order
        budget = DUMMY_BUDGET
        for s, t in forward:
            span = layer[t] - layer[s]
            if span == 1:
                self._segment(s, t)
            elif span - 1 <= budget:
                budget -= span - 1
                prev, chain = s, []
                for k in range(layer[s] + 1, layer[t]):
                    d = len(self.layer)
                    self.layer.append(k)
                    self.up.append([])
                    self.down.append([])
                    chain.append(d)
                    self._segment(prev, d)
                    prev = d
                self._segment(prev, t)
                self.through[s, t] = chain
        columns = max(self.layer, default=-1) + 1
        self.rows: list[list[int]] = [[] for _ in range(columns)]
        self.pos = [0] * len(self.layer)

    def _segment(self, a: int, b: int) -> None:
        self.down[a].append(b)
        self.up[b].append(a)

    # -- order ------------------------------------------------------------------------------------
    def order(self, rank: list[int]) -> int:
        """Order each layer to reduce crossings; returns the crossings left."""
        n = len(rank)
        # a start: boxes in topological order, each dummy right after its edge's source
        key = [float(rank[v]) if v < n else 0.0 for v in range(len(self.layer))]
        for (s, _), chain in self.through.items():
            for d in chain:
                key[d] = rank[s] + 0.5
        for v in sorted(range(len(self.layer)), key=key.__getitem__):
            self.rows[self.layer[v]].append(v)
        self._index()
        best, best_rows = self.crossings(), [list(r) for r in self.rows]
        for sweep in range(2 * SWEEPS):
            if best == 0:
                break
            if sweep % 2 == 0:
                for k in range(1, len(self.rows)):
                    self._sort(k, self.up, k - 1)
            else:
                for k in range(len(self.rows) - 2, -1, -1):
                    self._sort(k, self.down, k + 1)
            self._transpose()
            found = self.crossings()
            if found < best:
                best, best_rows = found, [list(r) for r in self.rows]
        self.rows = best_rows
        self._index()
        return best

    def _transpose(self) -> None:
        """Swap neighbours in a layer while that removes crossings with the layers on both sides."""
        pos, up, down = self.pos, self.up, self.down
        for _ in range(TRANSPOSES):
            improved = False
            for row in self.rows:
                for i in range(len(row) - 1):
                    u, v = row[i], row[i + 1]
                    if len(up[u]) * len(up[v]) + len(down[u]) * len(down[v]) > TRANSPOSE_WORK:
                        continue
                    now = _pairs_crossing(up[u], up[v], pos) + _pairs_crossing(down[u], down[v], pos)
                    swapped = _pairs_crossing(up[v], up[u], pos) + _pairs_crossing(down[v], down[u], pos)
                    if swapped < now:
                        row[i], row[i + 1] = v, u
                        pos[u], pos[v] = i + 1, i
                        improved = True
            if not improved:
                return

    def _index(self) -> None:
        for row in self.rows:
            for i, v in enumerate(row):
                self.pos[v] = i

    def _sort(self, k: int, near: list[list[int]], fixed: int) -> None:
        """Order layer ``k`` by the barycentre of each one's neighbours in layer ``fixed``
        (positions as fractions of their layers; one without neighbours keeps its place)."""
        row, pos = self.rows[k], self.pos
        scale, own = 1.0 / len(self.rows[fixed]), 1.0 / len(row)
        keyed = []
        for i, v in enumerate(row):
            ns = near[v]
            bary = (sum(pos[u] for u in ns) / len(ns) + 0.5) * scale if ns else (i + 0.5) * own
            keyed.append((bary, i, v))
        keyed.sort()
        self.rows[k] = row = [v for _, _, v in keyed]
        for i, v in enumerate(row):
            pos[v] = i

    def crossings(self) -> int:
        """Crossings of the segments between each pair of adjacent layers (Fenwick-tree count of
        inversions, O(E log V))."""
        pos, total = self.pos, 0
        for row, after in itertools.pairwise(self.rows):
            ends = sorted((pos[a], pos[b]) for a in row for b in self.down[a])
            size = len(after)
            tree = [0] * (size + 1)
            for seen, (_, b) in enumerate(ends):
                # the segments before this one whose lower end is further down cross it
                i, below = b + 1, 0
                while i > 0:
                    below += tree[i]
                    i -= i & -i
                total += seen - below
                i = b + 1
                while i <= size:
                    tree[i] += 1
                    i += i & -i
        return total

    # -- y ----------------------------------------------------------------------------------------
    def place(self, heights: list[float]) -> list[float]:
        """Each one's centre y: stacked by order, then pulled toward its neighbours' mean."""
        centre = [0.0] * len(self.layer)
        tallest = 0.0
        for row in self.rows:
            y = 0.0
            for i, v in enumerate(row):
                if i:
                    y += self._gap(row[i - 1], v, heights)
                centre[v] = y
            tallest = max(tallest, y)
        for row in self.rows:  # each column centred on the tallest one
            if row:
                lift = (tallest - centre[row[-1]]) / 2
                for v in row:
                    centre[v] += lift
        for p in range(PASSES):
            ks = range(1, len(self.rows)) if p % 2 == 0 else range(len(self.rows) - 2, -1, -1)
            for k in ks:
                row = self.rows[k]
                near = self.up if p % 2 == 0 else self.down
                if p == PASSES - 1:  # the last pass: both sides
                    want = [_mean([centre[u] for u in self.up[v] + self.down[v]], centre[v]) for v in row]
                else:
                    want = [_mean([centre[u] for u in near[v]], centre[v]) for v in row]
                gaps = [self._gap(row[i - 1], row[i], heights) for i in range(1, len(row))]
                for v, y in zip(row, _spaced(want, gaps), strict=True):
                    centre[v] = y
        return centre

    def _gap(self, a: int, b: int, heights: list[float]) -> float:
        gap = NODE_GAP if heights[a] and heights[b] else EDGE_GAP
        return (heights[a] + heights[b]) / 2 + gap


def _pairs_crossing(left: list[int], right: list[int], pos: list[int]) -> int:
    """Crossings between the segments of a box and of the box just after it, to the same layer."""
    return sum(1 for a in left for b in right if pos[a] > pos[b])


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _spaced(want: list[float], gaps: list[float]) -> list[float]:
    """The positions nearest ``want`` (least squares) keeping each at least ``gaps[i]`` after the
    one before: pool-adjacent-violators on the positions less the gaps before them."""
    offset = [0.0]
    for g in gaps:
        offset.append(offset[-1] + g)
    blocks: list[list[float]] = []  # [mean, count]
    for w, o in zip(want, offset, strict=True):
        blocks.append([w - o, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m, c = blocks.pop()
            blocks[-1][0] = (blocks[-1][0] * blocks[-1][1] + m * c) / (blocks[-1][1] + c)
            blocks[-1][1] += c
    out: list[float] = []
    for m, c in blocks:
        out += [m] * int(c)
    return [z + o for z, o in zip(out, offset, strict=True)]


# -- grouping -----------------------------------------------------------------------------------
class Instance(Protocol):
    """What grouping reads of a task instance (``InstanceRecord`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def upstream(self) -> list[str]: ...


def group_id(task: str) -> str:
    """The id of the box of a task's instances."""
    return f"task:{task}"


def graph_of(instances: Sequence[Instance], grouped: bool) -> tuple[list[Box], list[tuple[str, str]]]:
    """The boxes and edges to lay out: one box per instance, or (``grouped``) one per task, in the
    order of their first instance, with the edges between groups once each."""
    known = {i.id for i in instances}
    if not grouped:
        boxes = [Box(i.id, i.label) for i in instances]
        return boxes, [(u, i.id) for i in instances for u in i.upstream if u in known]
    task_of = {i.id: i.task for i in instances}
    sizes: dict[str, int] = {}
    for i in instances:
        sizes[i.task] = sizes.get(i.task, 0) + 1
    boxes = [Box(group_id(t), f"{t} ({n:,})", h=GROUP_H) for t, n in sizes.items()]
    edges: dict[tuple[str, str], None] = {}
    for i in instances:
        for u in i.upstream:
            if u in known and task_of[u] != i.task:
                edges[group_id(task_of[u]), group_id(i.task)] = None
    return boxes, list(edges)


def tally(instances: Iterable[Instance], grouped: bool) -> dict[str, dict[str, int]]:
    """Each box's instances by state: {state: 1} for an instance, the counts for a group."""
    if not grouped:
        return {i.id: {i.state: 1} for i in instances}
    counts: dict[str, dict[str, int]] = {}
    for i in instances:
        c = counts.setdefault(group_id(i.task), {})
        c[i.state] = c.get(i.state, 0) + 1
    return counts


def worst(counts: Mapping[str, int]) -> str:
    """The worst state with a count (in WORST's order; a state it does not list comes last)."""
    present = [s for s, n in counts.items() if n]
    if not present:
        return "pending"
    return min(present, key=lambda s: (WORST.index(s) if s in WORST else len(WORST), s))


__all__ = [
    "WORST",
    "Box",
    "Drawing",
    "Instance",
    "Placed",
    "Route",
    "graph_of",
    "group_id",
    "layout",
    "tally",
    "width_for",
    "worst",
]
