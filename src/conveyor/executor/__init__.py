"""Executors: where attempts run. They report outcomes; they never decide."""

from conveyor.executor.local import LocalExecutor

__all__ = ["LocalExecutor"]
