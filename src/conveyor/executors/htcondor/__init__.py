"""HTCondor: each attempt an HTCondor job, submitted through the official ``htcondor2`` bindings.

``pip install 'conveyor[htcondor]'``; then ``--executor htcondor`` or, in conveyor.toml::

    [executor]
    default = "htcondor"
    api = "http://submit.example:8080"      # a conveyor server execute nodes reach
    [executor.htcondor]
    schedd = "submit.example"               # default: the local schedd
    collector = "cm.example:9618"
    groups = { analytics = "group_physics.analytics" }   # default group_<team>

The package's modules: ``settings`` (the table above, checked), ``submit`` (one attempt as a
submit description, pure), ``status`` (a job ad as a status, pure), ``backend`` (the schedd).
docs/htcondor.md has the mapping and what was verified live and what was not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.executors.batch import BatchExecutor, pool_name
from conveyor.executors.htcondor.backend import CondorBackend
from conveyor.executors.htcondor.settings import parse


class HTCondorExecutor(BatchExecutor):
    """The executor port on an HTCondor schedd."""

    name: ClassVar[str] = "htcondor"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Any = None,
        settings: Mapping[str, Any] | None = None,
        schedd: Any = None,  # a schedd object to use instead of connecting (tests)
    ) -> None:
        backend = CondorBackend(parse(settings), schedd=schedd)
        super().__init__(backend, pool=pool_name(recorder, log_dir))
