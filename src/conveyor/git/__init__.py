"""The project's git remote: ``git push`` starts the runs ``conveyor.toml`` declares, at exactly
the pushed commit; ``git pull`` brings their results back (docs/git.md).

``backend`` serves smart HTTP through ``git http-backend`` inside ``conveyor server``; ``hooks``
are the bare repository's pre-receive (who may change the configuration) and post-receive (start
the runs); ``results`` commits each run's results on ``results/<branch>``; ``repo`` is the bare
repository and its plumbing; ``settings`` reads ``[[push]]``, ``[results]`` and
``[project] configuration``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.git.backend import GitRemote, home, project_name
    from conveyor.git.repo import Repository
    from conveyor.git.results import Clerk

#: Where each public name lives: imported on first use, so that the hooks (a process per push)
#: do not import the server's modules (FastAPI, the service) to read a ref update.
_HOMES = {
    "Clerk": "conveyor.git.results",
    "GitRemote": "conveyor.git.backend",
    "Repository": "conveyor.git.repo",
    "home": "conveyor.git.backend",
    "project_name": "conveyor.git.backend",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = ["Clerk", "GitRemote", "Repository", "home", "project_name"]
