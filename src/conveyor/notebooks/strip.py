"""Make an executed notebook the same bytes on every run of the same inputs.

papermill and nbclient stamp an executed notebook with when it ran: start and end times and
durations (``metadata.papermill``, each cell's ``metadata.papermill``), each cell's
``metadata.execution`` (``iopub.execute_input`` and the rest), the temporary path it was written to,
and random ids for the cells they insert. None of it is the notebook's content, and any of it
makes a re-run's bytes differ, so ``conveyor reproduce`` and a reviewer's diff would see a change
where there is none. What is kept: the cells, their outputs, the parameters it ran with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

#: Of papermill's notebook metadata, what says what ran rather than when or where.
KEPT = ("parameters", "default_parameters")


def strip(nb: Any, own_ids: Iterable[str], kernelspec: Any = None) -> Any:
    """``nb`` (an ``nbformat`` node) without run times, run paths or random cell ids; cells whose
    id is not one of ``own_ids`` (those the notebook file had) get an id made from their place and
    source. ``kernelspec``: put back the notebook's own (the task's kernel is an implementation
    detail of where it ran)."""
    pm = nb.metadata.get("papermill")
    if pm is not None:
        nb.metadata["papermill"] = {k: pm[k] for k in KEPT if k in pm}
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    else:
        nb.metadata.pop("kernelspec", None)
    own = set(own_ids)
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "id" in cell and cell["id"] not in own:
            digest = hashlib.sha256(f"{index}\n{cell.source}".encode()).hexdigest()[:12]
            cell["id"] = f"conveyor-{digest}"
    return nb
