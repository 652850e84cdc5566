"""An executed notebook as one HTML page (nbconvert), to read in a browser or the web UI.

Images are already inside the notebook (base64), so the page needs nothing else from anywhere.
The web UI shows it in a sandboxed frame with a policy that runs none of its scripts
(``conveyor.notebooks.serving``).
"""

from __future__ import annotations

from typing import Any


def to_html(nb: Any, title: str) -> str:
    """``nb`` rendered as a page titled ``title`` (the same bytes for the same notebook)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return str(body)
