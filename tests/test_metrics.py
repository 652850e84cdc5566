"""The ``/metrics`` exposition: what a Prometheus server scraping it would read."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.metrics import DEFAULT_BUCKETS, render
from conveyor.store import Batch, InstanceRecord, RunRecord, Store
from conveyor.store.records import AttemptRecord, TransitionRecord

RUN = "20261122-000000-aaaaaa"


@pytest.fixture
def db(store: Store) -> Store:
    return store


def running_run(db: Store) -> None:
    """A running run: ``a`` ready at 100, ran from 130 and succeeded after 2 s; ``b`` ready at
    100, ran from 101 and is running; ``c`` ready since 101; ``d`` pending."""
    run = RunRecord(id=RUN, pipeline="p", target="p.py:p", params={}, key="k", state="pending", created_at=1)
    db.create_run(run, [InstanceRecord(RUN, i, "t", f"t({i})", {}, []) for i in "abcd"])
    epoch = db.acquire(RUN, "host:1", ttl=1e9, now=1.0)

    def tr(iid: str, old: str, new: str, at: float, attempt: int) -> TransitionRecord:
        return TransitionRecord(iid, old, new, at, "test", attempt)

    db.commit(
        RUN,
        epoch,
        Batch(
            instances=[
                {"id": "a", "state": "running", "attempts": 1},
                {"id": "b", "state": "running", "attempts": 1},
                {"id": "c", "state": "ready"},
            ],
            attempts_started=[AttemptRecord(RUN, "b", 1, "running", 101.0)],
            transitions=[
                tr("a", "pending", "ready", 100.0, 0),
                tr("b", "pending", "ready", 100.0, 0),
                tr("b", "ready", "running", 101.0, 1),
                tr("c", "pending", "ready", 101.0, 0),
            ],
            run={"state": "running"},
        ),
        lease_until=1e9,
    )
    db.commit(
        RUN,
        epoch,
        Batch(
            instances=[{"id": "a", "state": "succeeded"}],
            attempts_started=[AttemptRecord(RUN, "a", 1, "running", 130.0)],
            attempts_ended=[{"instance_id": "a", "number": 1, "state": "succeeded", "ended_at": 132.0}],
            transitions=[tr("a", "ready", "running", 130.0, 1), tr("a", "running", "succeeded", 132.0, 1)],
        ),
        lease_until=1e9,
    )


def scrape(db: Store) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Each family's samples: (sample name, labels) -> value, as a Prometheus server parses them."""
    body, content_type = render(db)
    assert content_type.startswith("text/plain; version=")
    families = {}
    for fam in text_string_to_metric_families(body.decode()):
        assert fam.documentation, f"{fam.name} has no HELP text"
        families[fam.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
    return families


def test_every_run_state_is_reported_even_when_the_store_is_empty(db: Store) -> None:
    m = scrape(db)
    assert m["conveyor_runs"] == {
        ("conveyor_runs", (("state", s),)): 0.0
        for s in ("pending", "running", "succeeded", "failed", "cancelled")
    }
    assert m["conveyor_queue_depth"] == {("conveyor_queue_depth", ()): 0.0}
    assert m["conveyor_running_attempts"] == {("conveyor_running_attempts", ()): 0.0}
    assert m["conveyor_queue_wait_seconds"][("conveyor_queue_wait_seconds_count", ())] == 0.0


def test_a_running_run_is_seen_as_prometheus_reads_it(db: Store) -> None:
    running_run(db)
    m = scrape(db)
    assert m["conveyor_runs"][("conveyor_runs", (("state", "running"),))] == 1.0
    assert m["conveyor_runs"][("conveyor_runs", (("state", "pending"),))] == 0.0
    instances = {labels[0][1]: v for (_, labels), v in m["conveyor_task_instances"].items() if v}
    assert instances == {"pending": 1.0, "ready": 1.0, "running": 1.0, "succeeded": 1.0}
    assert m["conveyor_queue_depth"][("conveyor_queue_depth", ())] == 1.0  # c
    assert m["conveyor_running_attempts"][("conveyor_running_attempts", ())] == 1.0  # b's

    duration = m["conveyor_task_duration_seconds"]
    ok = (("state", "succeeded"),)
    assert duration[("conveyor_task_duration_seconds_bucket", (("le", "1.0"), *ok))] == 0.0
    assert duration[("conveyor_task_duration_seconds_bucket", (("le", "5.0"), *ok))] == 1.0  # 2 s
    assert duration[("conveyor_task_duration_seconds_bucket", (("le", "+Inf"), *ok))] == 1.0
    assert duration[("conveyor_task_duration_seconds_sum", ok)] == 2.0
    assert duration[("conveyor_task_duration_seconds_count", ok)] == 1.0
    assert duration[("conveyor_task_duration_seconds_count", (("state", "failed"),))] == 0.0

    # b waited 1 s, a 30 s; c has not started
    wait = {labels: v for (name, labels), v in m["conveyor_queue_wait_seconds"].items()}
    le = sorted(
        (float(dict(labels)["le"]), v) for labels, v in wait.items() if labels and labels[0][0] == "le"
    )
    assert [b for b, _ in le] == [*map(float, DEFAULT_BUCKETS), float("inf")]
    assert dict(le)[1.0] == 1.0 and dict(le)[15.0] == 1.0 and dict(le)[30.0] == 2.0
    assert m["conveyor_queue_wait_seconds"][("conveyor_queue_wait_seconds_sum", ())] == 31.0
    assert m["conveyor_queue_wait_seconds"][("conveyor_queue_wait_seconds_count", ())] == 2.0


def test_the_buckets_can_be_chosen(db: Store) -> None:
    running_run(db)
    body, _ = render(db, buckets=[10.0])
    [wait] = [
        f for f in text_string_to_metric_families(body.decode()) if f.name == "conveyor_queue_wait_seconds"
    ]
    assert [(s.labels["le"], s.value) for s in wait.samples if s.name.endswith("_bucket")] == [
        ("10.0", 1.0),
        ("+Inf", 2.0),
    ]
