"""Which kernel a notebook task runs on: pinned to the task's environment, never looked up by name.

A kernel looked up by name (``python3``) is whatever the machine's Jupyter paths hold first: a
user's old virtualenv, a conda base, another project's. A notebook task must run on the same
Python as its pipeline, so by default it gets a kernel spec written for this very interpreter
(``sys.executable``) in a private folder of its own; a project that needs another kernel names its
own kernel spec *directory* (``kernel="kernels/analysis"``, holding ``kernel.json``), which is
read from there and nowhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from conveyor.errors import NotebookError

#: The name our private kernel spec is written under (stable: it lands in the notebook's metadata).
OWN_KERNEL = "conveyor-python"


def own_kernel(folder: Path) -> Path:
    """Write a kernel spec that runs this Python's ipykernel into ``folder``; its directory."""
    spec = folder / OWN_KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    body = {"argv": argv, "display_name": "Python (Conveyor task)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(body, indent=1))
    return spec


def project_kernel(path: str, task: str) -> Path:
    """The project's own kernel spec directory ``path`` (relative to the run's directory), checked."""
    spec = Path(path)
    if not (spec / "kernel.json").is_file():
        raise NotebookError(
            f"task {task}: kernel {path!r} is not a kernel spec directory (no {spec / 'kernel.json'} "
            f"in {Path.cwd()}); give the folder that holds the project's kernel.json, or leave kernel= out "
            "to run on this Python"
        )
    try:
        json.loads((spec / "kernel.json").read_text())
    except (OSError, ValueError) as exc:
        raise NotebookError(f"task {task}: kernel {path!r}: its kernel.json cannot be read: {exc}") from None
    return spec


def manager_class(spec: Path) -> type[Any]:
    """A kernel manager class that finds kernel specs in ``spec``'s folder only (nbclient starts
    and stops the kernel with it; ``kernel_name`` is the spec directory's name)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    folder = str(spec.resolve().parent)

    class PinnedKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _only_this_folder(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[folder], ensure_native_kernel=False)

    return PinnedKernelManager
