"""What the store's parts share: the plumbing that ``SqlStore`` gives its mixins."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from conveyor.store.records import InstanceRecord, PartitionRecord, RunRecord
    from conveyor.store.statements import Statement


class Part:
    """A mixin of ``SqlStore``: a group of its methods on one idea, using its plumbing."""

    url: str
    dialect: str

    if TYPE_CHECKING:

        def _tx(self) -> AbstractContextManager[Connection]: ...
        def _cursor(self) -> AbstractContextManager[Any]: ...
        def _stmt(
            self,
            key: Hashable,
            build: Callable[[], Any],
            order: Sequence[str],
            column_keys: Sequence[str] | None = None,
        ) -> Statement: ...
        def _insert_run(
            self,
            cur: Any,
            run: RunRecord,
            instances: Sequence[InstanceRecord],
            partitions: Sequence[PartitionRecord],
        ) -> None: ...
