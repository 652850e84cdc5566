"""Which file is a notebook task's rendering, and the policy it is served under.

A notebook's HTML is the notebook author's (and whatever its outputs printed): served from
Conveyor's origin it could read the signed-in user's API. So it is served with a policy of its
own: ``sandbox`` (an opaque origin: no cookies, no storage, no API of ours), no script at all, no
network; only its inline styles and its embedded images. The web UI shows it in an
``<iframe sandbox>`` too, so either alone would hold.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from conveyor.errors import NotFound, RunBusy, TargetError
from conveyor.notebooks.execution import failed_copy
from conveyor.targets import FileTarget

POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: The states in which a notebook task has a rendering to show: its own, or the failed one's.
SHOWN = ("succeeded", "skipped", "failed")


def notebook_target(targets: list[str]) -> str | None:
    """The executed notebook among a task's targets: an ``.ipynb`` with its ``.html`` beside it."""
    for t in targets:
        if t.endswith(".ipynb") and t.removesuffix(".ipynb") + ".html" in targets:
            return t
    return None


def rendering_of(label: str, state: str, targets: list[str], workdir: str) -> bytes:
    """The HTML of the notebook task ``label``: its executed notebook; after a failure, the
    notebook up to the failing cell. Relative targets are in the run's directory ``workdir``."""
    nb = notebook_target(targets)
    if nb is None:
        raise NotFound(f"{label} is not a notebook task: it has no executed notebook to show")
    if state not in SHOWN:
        raise RunBusy(f"{label} is {state}: its notebook has not run yet; ask again when it has ended")
    url = nb.removesuffix(".ipynb") + ".html"
    if state == "failed":
        url = str(failed_copy(FileTarget(nb)).with_suffix(".html"))
    local = "://" not in url
    path = Path(workdir, url) if local and not PurePath(url).is_absolute() else Path(url)
    try:
        if local:
            return path.read_bytes()
        with FileTarget(url).open("rb") as f:
            return bytes(f.read())
    except (OSError, TargetError):
        what = "the notebook up to its failing cell" if state == "failed" else "its rendered notebook"
        raise NotFound(f"{label}: {what} ({path if local else url}) is gone; run the task again") from None
