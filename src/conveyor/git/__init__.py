"""The project's git remote: ``git push`` starts the runs ``conveyor.toml`` declares, at exactly
the pushed commit; ``git pull`` brings their results back (docs/git.md).

``backend`` serves smart HTTP through ``git http-backend`` inside ``conveyor server``; ``hooks``
are the bare repository's pre-receive (who may change the configuration) and post-receive (start
the runs); ``results`` commits each run's results on ``results/<branch>``; ``repo`` is the bare
repository and its plumbing; ``settings`` reads ``[[push]]``, ``[results]`` and
``[project] configuration``.
"""

from conveyor.git.backend import GitRemote, home, project_name
from conveyor.git.repo import Repository
from conveyor.git.results import Clerk

__all__ = ["Clerk", "GitRemote", "Repository", "home", "project_name"]
