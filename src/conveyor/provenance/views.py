"""The run record as the API, the Python client, ``conveyor show`` and the UI show it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.store import Store
from conveyor.store.records import Provenance, RunRecord


class ProvenanceView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    commit: str | None = Field(
        None, description="The code's git commit; None: not run from a git working copy"
    )
    diff_hash: str | None = Field(
        None, description="SHA-256 of the uncommitted diff; None: the working copy was clean"
    )
    diff: str | None = Field(
        None, description="The uncommitted diff (git diff HEAD and untracked source files)"
    )
    python: str
    platform: str
    env_hash: str = Field(description="SHA-256 of the lock file, or of the installed distributions")
    env_kind: str = Field(description='"lock:<file>" or "distributions"')
    image: str | None = Field(None, description="The container image its attempts ran in")
    commit_time: dt.datetime | None = Field(
        None, description="The commit's time: SOURCE_DATE_EPOCH for its tasks"
    )
    inputs: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="Per task instance id: its inputs' fingerprints"
    )
    results: dict[str, str] = Field(
        default_factory=dict, description="Per task instance id: SHA-256 of the value it returned"
    )

    @classmethod
    def of(
        cls,
        p: Provenance,
        image: str | None,
        inputs: dict[str, list[dict[str, Any]]],
        results: dict[str, str],
    ) -> ProvenanceView:
        when = p.source_date_epoch
        return cls(
            commit=p.git_commit,
            diff_hash=p.diff_hash,
            diff=p.diff,
            python=p.python,
            platform=p.platform,
            env_hash=p.env_hash,
            env_kind=p.env_kind,
            image=image,
            commit_time=None if when is None else dt.datetime.fromtimestamp(when, dt.UTC),
            inputs=inputs,
            results=results,
        )


def provenance_view(store: Store, run: RunRecord) -> ProvenanceView | None:
    """``run``'s record from ``store``; None for a run created before records were kept."""
    from conveyor.provenance.record import result_hashes

    p = store.provenance(run.id)
    if p is None:
        return None
    return ProvenanceView.of(p, run.image, store.instance_inputs(run.id), result_hashes(store, run.id))
