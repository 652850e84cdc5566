"""Run one notebook with papermill: the adapter between a notebook task and papermill, nbclient
and nbconvert, whose errors become one ``NotebookError`` line here.

The executed notebook is written, stripped of run times (``strip``), to the task's staged target,
and its HTML rendering beside it; the runner makes both final when the task returns. A cell that
raises leaves the notebook as it was up to that cell (with papermill's marker of where it
stopped) beside the final target as ``NAME.failed.ipynb`` and ``NAME.failed.html``, since the
staged targets are dropped when a task fails.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from conveyor.errors import NotebookError
from conveyor.notebooks import kernels, rendering
from conveyor.notebooks.strip import strip
from conveyor.targets import FileTarget, Output

#: A cell may run this long (seconds) unless the task says otherwise; the task's own ``timeout=``
#: bounds the whole attempt.
CELL_TIMEOUT: int | None = None


def plain(value: Any, where: str) -> Any:
    """``value`` as something papermill can write into a cell as Python source: dates as ISO
    text, targets and paths as their path, containers element by element."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, FileTarget):
        return value.path
    if isinstance(value, Output | PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return plain(value.value, where)
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(items)]
    raise NotebookError(
        f"{where}: a {type(value).__name__} cannot be written into a notebook as a parameter; pass "
        "text, numbers, dates, lists, dicts or file targets (write a large value to a target upstream "
        "and pass the target)"
    )


def failed_copy(final: FileTarget) -> Path:
    """Where a failed run of the notebook whose final target is ``final`` is kept."""
    name = PurePath(final.url.rstrip("/")).name
    stem = name.removesuffix(".ipynb")
    folder = Path(final.url).parent if final.is_local else Path(".conveyor", "failed-notebooks")
    return folder / f"{stem}.failed.ipynb"


def run_notebook(
    source: str,
    *,
    task: str,
    values: Mapping[str, Any],
    kernel: str | None,
    staged: tuple[FileTarget, FileTarget],
    final: FileTarget,
) -> None:
    """Execute ``source`` with ``values`` injected after its ``parameters`` cell; write the
    executed notebook and its HTML to the ``staged`` targets (notebook, html)."""
    _need_extra(task)
    import nbformat

    if not Path(source).is_file():
        raise NotebookError(
            f"task {task}: notebook {source} does not exist (in {Path.cwd()}); "
            "fix the path given to notebook()"
        )
    try:
        original = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises its own, json's and OSError
        raise NotebookError(f"task {task}: notebook {source} cannot be read: {exc}") from None
    own_ids = [c["id"] for c in original.cells if "id" in c]
    parameters = {k: plain(v, f"task {task}: parameter {k!r}") for k, v in values.items()}
    with tempfile.TemporaryDirectory(prefix="conveyor-notebook-") as private:
        spec = (
            kernels.project_kernel(kernel, task) if kernel else kernels.own_kernel(Path(private, "kernels"))
        )
        executed = Path(private, "executed.ipynb")
        failure = _execute(source, executed, parameters, spec, task)
        nb = original
        if executed.exists():
            nb = nbformat.read(executed, as_version=4)  # type: ignore[no-untyped-call]
    strip(nb, own_ids, original.metadata.get("kernelspec"))
    if failure is not None:
        kept = failed_copy(final).resolve()
        html = kept.with_suffix(".html")
        _replace(kept, nbformat.writes(nb) + "\n")  # type: ignore[no-untyped-call]
        _replace(html, rendering.to_html(nb, kept.stem))
        raise NotebookError(
            f"notebook {source}: {failure}; the notebook up to that cell is kept in {kept} ({html})"
        )
    notebook_target, html_target = staged
    nbformat.write(nb, notebook_target.path)  # type: ignore[no-untyped-call]
    Path(html_target.path).write_text(rendering.to_html(nb, PurePath(source).stem), encoding="utf-8")
    if final.is_local:  # a success replaces what a failed attempt left
        old = failed_copy(final)
        old.unlink(missing_ok=True)
        old.with_suffix(".html").unlink(missing_ok=True)


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a reader never sees half a failed notebook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _need_extra(task: str) -> None:
    """A notebook task on an install without the ``notebooks`` extra: say which, in one line."""
    import importlib.util

    missing = [m for m in ("papermill", "nbconvert", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        raise NotebookError(
            f"task {task}: running a notebook needs {', '.join(missing)}, which this Python lacks; "
            "pip install 'conveyor[notebooks]'"
        )


def _execute(source: str, executed: Path, parameters: dict[str, Any], spec: Path, task: str) -> str | None:
    """Run papermill; None, or what a cell raised ("cell 4 raised ValueError: ..."). Any other
    failure (the kernel, papermill itself) is raised as a NotebookError."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    quiet = logging.getLogger("papermill")
    try:
        papermill.execute_notebook(
            source,
            str(executed),
            parameters=parameters,
            kernel_name=spec.name,
            language="python",
            progress_bar=False,
            log_output=True,
            cwd=os.getcwd(),
            kernel_manager_class=kernels.manager_class(spec),
            execution_timeout=CELL_TIMEOUT,
        )
    except PapermillExecutionError as exc:
        return f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}"
    except NotebookError:
        raise
    except Exception as exc:  # a kernel that dies or will not start, a missing translator, ...
        quiet.debug("papermill failed", exc_info=True)
        raise NotebookError(
            f"task {task}: notebook {source} could not run: {type(exc).__name__}: {exc}"
        ) from None
    return None
