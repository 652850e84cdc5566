"""``conveyor reproduce RUN`` and the Provenance section of ``conveyor show``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.common import DbOpt, console

if TYPE_CHECKING:
    from conveyor.views import RunDetail


def reproduce(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse to run when Python, the environment or the image differ.")
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch checkout and store, even if identical.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Re-run a run's record in a fresh checkout of its commit and compare every output: exit 0
    when all are identical, 1 at the first difference."""
    from conveyor.cli.common import connect
    from conveyor.provenance.reproduce import reproduce as run_again
    from conveyor.store import default_url, open_store

    view = connect(None, db).run(run_id)  # a prefix, a missing run: the usual messages
    store = open_store(db or default_url())
    try:
        outcome = run_again(
            store,
            view.id,
            strict=strict,
            keep=keep,
            say=_say,
        )
    finally:
        store.close()
    for what in outcome.identical:
        console.print(f"[green]=[/] {escape(what)}", soft_wrap=True)
    for what in outcome.not_compared:
        console.print(f"[dim]?[/] {escape(what)}", soft_wrap=True)
    for what, diff in outcome.different:
        console.print(f"[red]≠[/] {escape(what)}: {escape(diff.summary)}", soft_wrap=True)
        if diff.detail:
            console.print(
                "    " + escape(diff.detail).replace("\n", "\n    "), soft_wrap=True, highlight=False
            )
    if outcome.state != "succeeded":
        console.print(f"[red]The re-run {outcome.state}[/]; its log: {outcome.scratch / 'rerun.log'}")
    if outcome.same:
        console.print(
            f"[bold green]Identical:[/] run {outcome.run_id} reproduced, "
            f"{len(outcome.identical)} outputs the same."
        )
        raise typer.Exit(0)
    console.print(
        f"[bold red]Different:[/] run {outcome.run_id} did not reproduce; "
        f"the re-run is kept in {outcome.scratch}"
    )
    raise typer.Exit(1)


def _say(line: str, warning: bool) -> None:
    console.print(f"[yellow]![/] {escape(line)}" if warning else f"[dim]{escape(line)}[/]", soft_wrap=True)


def show_provenance(r: RunDetail) -> None:
    """The Provenance section of ``conveyor show``."""
    p = r.provenance
    if p is None:
        return
    console.print("Provenance")
    if p.commit:
        dirty = (
            f"  + uncommitted diff {p.diff_hash[:12]} ({len((p.diff or '').splitlines())} lines)"
            if p.diff_hash
            else "  (clean)"
        )
        console.print(f"  commit    {p.commit}{dirty}", soft_wrap=True)
    else:
        console.print("  commit    none: not run from a git working copy")
    console.print(f"  python    {escape(p.python)} on {escape(p.platform)}", soft_wrap=True)
    console.print(f"  env       {p.env_hash[:16]} ({escape(p.env_kind)})")
    if p.image:
        console.print(f"  image     {escape(p.image)}", soft_wrap=True)
    labels = {t.id: t.label for t in r.tasks}
    for t in r.tasks:
        for fp in t.outputs or []:
            where = fp.get("target", "")
            digest = fp.get("sha256") or (f"{fp['rows']} rows" if "rows" in fp else "")
            console.print(
                f"  output    {escape(t.label)}: {escape(str(where))} {str(digest)[:16]}", soft_wrap=True
            )
        if t.id in p.results:
            console.print(f"  result    {escape(t.label)}: {p.results[t.id][:16]}", soft_wrap=True)
    for iid, fps in p.inputs.items():
        for fp in fps:
            what = "returned value" if fp.get("result") else fp.get("target") or fp.get("path", "")
            digest = fp.get("sha256") or (f"{fp['rows']} rows" if "rows" in fp else "")
            console.print(
                f"  input     {escape(labels.get(iid, iid))} <- {escape(str(fp.get('from', '')))}: "
                f"{escape(str(what))} {str(digest)[:16]}",
                soft_wrap=True,
            )
