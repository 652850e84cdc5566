"""Notebooks as tasks, and Jupyter as home.

- ``notebook("analysis/report.ipynb", parameters={...}, output=...)`` (``task``): a notebook as
  a task, run with papermill (``execution``) on a kernel pinned to the task's environment
  (``kernels``), kept as its target without run times (``strip``) and rendered as HTML
  (``rendering``) that the API serves in a sandbox (``serving``);
- ``%load_ext conveyor`` (``magics``): ``%conveyor run PIPELINE -p k=v`` and ``%%conveyor``.

Running a notebook needs the ``notebooks`` extra (papermill, nbconvert, ipykernel); defining
one does not.
"""

from conveyor.notebooks.task import NotebookBody, notebook

__all__ = ["NotebookBody", "notebook"]
