"""The submit descriptions a run of a pipeline would get, without a schedd or a store: for review
(``conveyor htcondor submit-file``) and for checking them offline with HTCondor's own parser.

The run's id, each attempt's inputs and its token are only known once the run is submitted;
the preview makes a run record as ``conveyor run`` would (a fresh id) and shows the token's
file, never a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.executors.batch import Spec, spec_of
from conveyor.executors.htcondor.settings import CondorSettings
from conveyor.executors.htcondor.submit import description
from conveyor.graph import Node
from conveyor.runner import Job

#: The execution API's address when neither the settings nor [executor] api name one.
NO_API = "http://CONVEYOR-SERVER:8080"
POOL = "cv-preview"


@dataclass(frozen=True, slots=True)
class Preview:
    node: Node
    spec: Spec
    description: dict[str, str]


def previews(
    target: str,
    params: Mapping[str, Any] | None,
    settings: CondorSettings,
    *,
    api: str | None = None,
    team: str | None = None,
    user: str | None = None,
) -> list[Preview]:
    """Each task instance's first attempt as HTCondor would get it, in the graph's order."""
    from conveyor import engine
    from conveyor import params as P
    from conveyor.loader import load_pipeline

    pipe = load_pipeline(target)
    ref = engine.canonical_target(target, pipe.name)
    bound = pipe.bind(params or {}, from_text=True)
    graph = pipe.build(bound, workdir=os.getcwd())
    run = engine.new_run(pipe, ref, P.to_json(pipe.params, bound), "preview", graph)
    team = run.team or "" if team is None else team
    address = settings.api or api or NO_API
    out = []
    for node in graph:
        job = Job(
            run.id, node.id, 1, f".conveyor/logs/{run.id}/{node.task.name}-{node.id}/1.log",
            ".conveyor/artifacts", dict.fromkeys(node.inputs), run.target, run.params, run.workdir,
        )  # fmt: skip
        t = node.task
        spec = spec_of(
            job, api=address, token="", resources=t.resources, timeout=t.timeout, team=team, pool=POOL,
            network=t.network,
        )  # fmt: skip
        out.append(Preview(node, spec, description(spec, settings, POOL, user)))
    return out
