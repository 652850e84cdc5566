"""``notebook()``: an existing Jupyter notebook as a task, run with papermill.

The definition is an ordinary frozen ``TaskDef`` whose body is a ``NotebookBody``: the graph,
the scheduler and every executor treat it as a function task, and its parameters are filled the
same way, so an upstream task's result or targets arrive as the notebook's parameters.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from conveyor import params as P
from conveyor.errors import DefinitionError
from conveyor.tasks import TaskDef, _check_options, _make, output


class NotebookBody:
    """What a notebook task does when it runs: execute ``path`` with its parameters. Named like a
    function (``__qualname__``) so that the task's origin reads ``notebook(PATH)``."""

    def __init__(self, path: str, kernel: str | None, task: str) -> None:
        self.path = path
        self.kernel = kernel
        self.task = task
        self.__name__ = task
        self.__qualname__ = f"notebook({path})"

    def __repr__(self) -> str:
        return f"<notebook {self.path}>"

    def __call__(self, **values: Any) -> None:
        from conveyor.notebooks.execution import run_notebook

        staged, final = output(), output(final=True)
        run_notebook(
            self.path,
            task=self.task,
            values=values,
            kernel=self.kernel,
            staged=(staged["notebook"], staged["html"]),
            final=final["notebook"],
        )


def _is_type(value: Any) -> bool:
    return isinstance(value, type) or value is Any or typing.get_origin(value) is not None


def _params(parameters: Mapping[str, Any] | None, owner: str) -> tuple[P.Param, ...]:
    out = []
    for name, value in (parameters or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise DefinitionError(f"{owner}: parameter name {name!r} must be a Python identifier")
        if _is_type(value):
            out.append(P.Param(name, P.param_type(value)))
            continue
        ptype = P.param_type(type(value))
        try:
            default = ptype.check(value) if ptype.literal else value
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"{owner}: default of parameter {name!r}: {exc}") from None
        out.append(P.Param(name, ptype, default))
    return tuple(out)


def notebook(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output: str,
    kernel: str | Path | None = None,
    name: str | None = None,
    **options: Any,
) -> TaskDef:
    """A Jupyter notebook as a task, executed with papermill in the run's directory.

    ``parameters``: the task's parameters, each a type (``{"day": date}``: given when the task is
    called in a pipeline) or a default value (``{"top": 5}``); their values are injected after
    the cell tagged ``parameters``. Upstream results and targets passed to the task arrive the
    same way (targets as their path). ``output``: where the executed notebook is kept, a path
    template ending in ``.ipynb``; its HTML rendering is kept beside it (``.html``), and both are
    the task's targets. ``kernel``: the project's own kernel spec directory (holding
    ``kernel.json``); by default the notebook runs on this Python. Other options as ``@task``.
    """
    source = str(path)
    tname = name or PurePath(source).stem.replace(" ", "_")
    owner = f"task {tname}"
    _check_options({**options, "output": output}, owner)
    if not source.endswith(".ipynb"):
        raise DefinitionError(f"{owner}: notebook {source!r} must be a .ipynb file")
    if not isinstance(output, str) or not output.endswith(".ipynb"):
        raise DefinitionError(
            f"{owner}: output must be a path template ending in .ipynb (where the executed notebook is "
            f"kept, e.g. 'reports/{{day}}.ipynb'), got {output!r}"
        )
    html = output.removesuffix(".ipynb") + ".html"
    body = NotebookBody(source, None if kernel is None else str(kernel), tname)
    return _make(
        name=tname,
        kind="function",
        params=_params(parameters, owner),
        fn=body,
        output={"notebook": output, "html": html},
        **options,
    )
