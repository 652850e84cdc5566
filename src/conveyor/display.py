"""How the Python client shows runs and backfills: a live progress display while waiting (an
HTML bar updated in place in Jupyter, a Rich line in a terminal, nothing otherwise), and the
HTML tables of a notebook's ``_repr_html_``. Everything a user or a task wrote is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.views import BackfillView, RunView, TaskView

ENDED = ("succeeded", "failed", "cancelled")

#: The colour of each state, in the bar and the labels.
COLOURS = {
    "succeeded": "#2e7d32",
    "skipped": "#81c784",
    "failed": "#c62828",
    "cancelled": "#757575",
    "running": "#1565c0",
    "pending": "#9e9e9e",
    "waiting": "#bdbdbd",
}

#: The order in which states are counted: what is done first, what is left last.
ORDER = (
    "succeeded",
    "skipped",
    "failed",
    "cancelled",
    "running",
    "retry_wait",
    "ready",
    "pending",
    "waiting",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a progress display shows of a run or a backfill at one moment."""

    kind: str  # "run" or "backfill"
    id: str
    pipeline: str
    state: str
    done: int
    total: int
    unit: str  # "tasks" or "dates"
    counts: Mapping[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def line(self) -> str:
        """The counts as one line of text: ``3/3 tasks done, 0 running, 1 failed (2s)``."""
        c = self.counts
        parts = [f"{self.done}/{self.total} {self.unit} done", f"{c.get('running', 0)} running"]
        parts += [f"{c[k]} {k}" for k in ("failed", "cancelled", "skipped") if c.get(k)]
        if c.get("retry_wait"):
            parts.append(f"{c['retry_wait']} waiting to retry")
        return ", ".join(parts) + f" ({self.elapsed:.0f}s)"

    def text(self) -> str:
        return f"{self.kind} {self.id} of {self.pipeline}: {self.state}, {self.line()}"


def of_run(view: RunView, now: dt.datetime | None = None) -> Snapshot:
    c = view.counts
    return Snapshot(
        "run",
        view.id,
        view.pipeline,
        view.state,
        c.get("succeeded", 0) + c.get("skipped", 0),
        view.total,
        "tasks",
        dict(c),
        _elapsed(view.created_at, view.ended_at, now),  # since it was submitted
        view.error,
    )


def of_backfill(view: BackfillView, now: dt.datetime | None = None) -> Snapshot:
    return Snapshot(
        "backfill",
        view.id,
        view.pipeline,
        view.state,
        view.done,
        view.total,
        "dates",
        dict(view.counts),
        _elapsed(view.created_at, view.ended_at, now),
    )


def _elapsed(start: dt.datetime, end: dt.datetime | None, now: dt.datetime | None) -> float:
    stop = end or now or dt.datetime.now(dt.UTC)
    return max(0.0, (stop - start).total_seconds())


# -- live displays ------------------------------------------------------------------------------
class Display(Protocol):
    def show(self, snap: Snapshot) -> None: ...
    def close(self) -> None: ...


class Nothing:
    """Not interactive: show nothing."""

    def show(self, snap: Snapshot) -> None:
        pass

    def close(self) -> None:
        pass


class Notebook:
    """An HTML progress bar in the cell's output, updated in place (one ``display_id``)."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._last = ""

    def show(self, snap: Snapshot) -> None:
        from IPython.display import display

        page = progress_html(snap)
        if page == self._last:
            return
        self._last = page
        bundle = {"text/html": page, "text/plain": snap.text()}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)

    def close(self) -> None:
        pass  # the last update stays in the output


class Terminal:
    """A Rich progress line on standard error, redrawn in place."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
        self._live.start()

    def show(self, snap: Snapshot) -> None:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        finished = snap.done
        if snap.kind == "run":
            finished += snap.counts.get("failed", 0) + snap.counts.get("cancelled", 0)
        line = Text.assemble(
            (snap.pipeline, "bold"), " ", (snap.state, _rich_style(snap.state)), " ", snap.line()
        )
        line.no_wrap, line.overflow = True, "ellipsis"
        grid = Table.grid(padding=(0, 1))
        # Named colours, not Rich's default RGB and 256-colour ones: in a 16-colour terminal
        # those all become the same grey, and a finished bar looks empty.
        bar = ProgressBar(
            total=max(snap.total, 1),
            completed=finished,
            width=20,
            style="bright_black",
            complete_style="blue",
            finished_style=_rich_style(snap.state) or "green",
        )
        grid.add_row(bar, line)
        self._live.update(grid, refresh=True)

    def close(self) -> None:
        self._live.stop()


def _rich_style(state: str) -> str:
    return {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "blue"}.get(state, "")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where HTML output is shown)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def live(progress: bool) -> Display:
    """The display for this process: HTML in Jupyter, Rich in a terminal, else nothing."""
    if not progress:
        return Nothing()
    if in_notebook():
        return Notebook()
    if sys.stderr.isatty():
        return Terminal()
    return Nothing()


# -- HTML -----------------------------------------------------------------------------------------
def escape(value: object) -> str:
    """``value`` as text safe inside HTML."""
    return html.escape(str(value), quote=True)


def _badge(state: str) -> str:
    colour = COLOURS.get(state, "#616161")
    return f'<span style="color:{colour};font-weight:bold">{escape(state)}</span>'


def _bar(snap: Snapshot) -> str:
    total = max(snap.total, 1)
    parts = []
    for state in ("succeeded", "skipped", "failed", "cancelled", "running"):
        n = snap.counts.get(state, 0)
        if n:
            parts.append(
                f'<div title="{n} {state}" style="width:{100 * n / total:.2f}%;'
                f'background:{COLOURS[state]}"></div>'
            )
    return (
        '<div style="display:flex;width:20em;height:0.8em;background:#eeeeee;'
        f'border-radius:3px;overflow:hidden;margin:3px 0">{"".join(parts)}</div>'
    )


def _counts(snap: Snapshot) -> str:
    shown = [f"<b>{snap.done}/{snap.total}</b> {snap.unit} done"]
    for state in ORDER:
        n = snap.counts.get(state, 0)
        if n or state in ("running", "failed"):
            shown.append(f"{n} {escape(state.replace('_', ' '))}")
    return " · ".join(shown) + f" · {snap.elapsed:.0f}s"


def progress_html(snap: Snapshot) -> str:
    """The progress of a run or backfill: its state, a bar, its counts by state, its error."""
    error = ""
    if snap.error:
        error = f'<pre style="color:{COLOURS["failed"]};margin:2px 0">{escape(_last_line(snap.error))}</pre>'
    return (
        '<div class="conveyor-progress" style="font-family:sans-serif;font-size:90%">'
        f"<div>{escape(snap.kind)} <code>{escape(snap.id)}</code> of <b>{escape(snap.pipeline)}</b>: "
        f"{_badge(snap.state)}</div>{_bar(snap)}<div>{_counts(snap)}</div>{error}</div>"
    )


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f'<th style="text-align:left">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:left">{cell}</td>' for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{escape(k)}={escape(v)}" for k, v in params.items())


def run_html(view: RunView, tasks: list[TaskView] | None = None) -> str:
    """A run: its progress, its parameters, and a row per task instance."""
    out = progress_html(of_run(view))
    if view.params:
        out += f'<div style="font-size:90%">params: {_params(view.params)}</div>'
    if tasks:
        out += tasks_html(tasks)
    return out


def run_card(
    view: RunView, tasks: list[TaskView], graph: str | None, links: Iterable[tuple[str, str]]
) -> str:
    """A run in a notebook cell: its progress and counts, its graph (``graph``: SVG, from
    ``conveyor.picture``), its tasks, and ``links`` ((text, href) pairs: the web UI, the API)."""
    out = run_html(view, tasks)
    if graph:
        out += f'<div class="conveyor-graph-box" style="margin:4px 0;overflow-x:auto">{graph}</div>'
    shown = [
        f'<a href="{escape(href)}" target="_blank" rel="noopener">{escape(text)}</a>' for text, href in links
    ]
    if shown:
        out += f'<div class="conveyor-links" style="font-size:90%">{" · ".join(shown)}</div>'
    return out


def task_html(t: TaskView, notebook: str | None = None) -> str:
    """One task instance: its state, attempts, duration, targets and error; ``notebook``: where
    its rendered notebook is (a notebook task)."""
    rows = [
        ("state", _badge(t.state)),
        ("attempts", str(t.attempts)),
        ("duration", _seconds(t.duration)),
        ("instance", f"<code>{escape(t.id)}</code>"),
    ]
    if t.params:
        rows.append(("params", _params(t.params)))
    if t.targets:
        rows.append(("targets", "<br>".join(f"<code>{escape(x)}</code>" for x in t.targets)))
    if notebook:
        rows.append(("notebook", f'<a href="{escape(notebook)}" target="_blank" rel="noopener">rendered</a>'))
    if t.error:
        rows.append(("error", f'<pre style="color:{COLOURS["failed"]};margin:0">{escape(t.error)}</pre>'))
    body = "".join(
        f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>' for k, v in rows
    )
    return f'<div class="conveyor-task"><b>{escape(t.label)}</b><table>{body}</table></div>'


def tasks_html(tasks: Iterable[TaskView]) -> str:
    """Task instances as a table: label, state, attempts, duration, last line of the error."""
    return _table(
        ("task", "state", "attempts", "duration", "error"),
        (
            (
                escape(t.label),
                _badge(t.state),
                str(t.attempts),
                _seconds(t.duration),
                f"<code>{escape(_last_line(t.error))}</code>" if t.error else "",
            )
            for t in tasks
        ),
    )


def result_html(
    run_id: str, state: str, counts: Mapping[str, int], elapsed: float, failed: Iterable[tuple[str, str]]
) -> str:
    """How a run driven here ended (``conveyor.run``'s ``RunResult``)."""
    snap = Snapshot(
        "run",
        run_id,
        "",
        state,
        sum(counts.get(s, 0) for s in ("succeeded", "skipped")),
        sum(counts.values()),
        "tasks",
        counts,
        elapsed,
    )
    out = (
        '<div class="conveyor-result" style="font-family:sans-serif;font-size:90%">'
        f"run <code>{escape(run_id)}</code>: "
        f"{_badge(state)}{_bar(snap)}<div>{_counts(snap)}</div>"
    )
    for label, error in failed:
        line = escape(_last_line(error))
        out += f'<div>{escape(label)}: <code style="color:{COLOURS["failed"]}">{line}</code></div>'
    return out + "</div>"


def runs_html(views: Iterable[RunView], total: int) -> str:
    """A page of runs, newest first."""
    rows = [
        (
            f"<code>{escape(v.id)}</code>",
            escape(v.pipeline),
            _badge(v.state),
            f"{of_run(v).done}/{v.total}",
            _params(v.params),
            escape(v.created_at.isoformat(timespec="seconds")),
            _seconds(v.duration),
        )
        for v in views
    ]
    caption = f'<div style="font-size:90%">{len(rows)} of {total} runs</div>'
    return caption + _table(("run", "pipeline", "state", "done", "params", "created", "duration"), rows)


def backfill_html(view: BackfillView) -> str:
    """A backfill: its progress and a row per logical date."""
    rows = [
        (
            escape(d.when.isoformat()),
            _badge(d.state),
            f"<code>{escape(d.run)}</code>" if d.run else "",
            "yes" if d.retried else "",
        )
        for d in view.dates
    ]
    return progress_html(of_backfill(view)) + _table(("date", "state", "run", "retried"), rows)
