"""The result cache: a task instance whose code, parameters, inputs and environment are those of
an attempt that succeeded before takes that attempt's outputs and result instead of executing
(``docs/cache.md``)."""

from conveyor.cache.keys import instance_key, task_code
from conveyor.cache.plan import Plan, cacheable, plan
from conveyor.cache.run import RunCache
from conveyor.cache.settings import enabled, project_root

__all__ = ["Plan", "RunCache", "cacheable", "enabled", "instance_key", "plan", "project_root", "task_code"]
