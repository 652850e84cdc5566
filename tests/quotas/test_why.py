"""Why an attempt waits: one line each, in the user's terms, and the same as JSON."""

from __future__ import annotations

import json

import pytest

from conveyor.quotas import (
    Backoff,
    BorrowLimit,
    FairShare,
    LenderBusy,
    NoCapacity,
    NoExecutor,
    QuotaFull,
    Reason,
    RunsFull,
    Upstream,
    as_dict,
)

GiB = 2**30

EXAMPLES: list[tuple[Reason, str]] = [
    (
        QuotaFull("a", "cpu", 8, 8, ("20260101-090000-aa", "20260101-090500-bb")),
        "team quota: cpu 8 of 8 in use by team a (runs 20260101-090000-aa, 20260101-090500-bb)",
    ),
    (QuotaFull("a", "memory", 6 * GiB, 8 * GiB), "team quota: memory 6GiB of 8GiB in use by team a"),
    (
        RunsFull("a", 3, 3),
        "team quota: 3 of 3 runs of team a open; this run starts when one of them ends",
    ),
    (
        BorrowLimit("a", "gpu", 2, 2),
        "borrow limit: team a borrows gpu 2 of the 2 it may beyond its quota",
    ),
    (
        LenderBusy("a", "cpu"),
        "team a is over its cpu quota and the teams with idle cpu have pending work of their own",
    ),
    (FairShare("a", 0.62, 1 / 3), "fair share: team a uses 62% of the cluster, its share is 33%"),
    (
        FairShare("a", 0.1, 0.5, 0.75),
        "fair share: team a uses 10% of the cluster, lately 75%, its share is 50%",
    ),
    (NoCapacity("memory", 62 * GiB, 64 * GiB), "cluster full: memory 62GiB of 64GiB in use"),
    (Upstream(("extract", "clean")), "waiting for upstream extract, clean"),
    (Backoff(1767225600.0), "retry backoff until 2026-01-01T00:00:00Z"),
    (
        NoExecutor("dask: no worker\nhas resources gpu=1"),
        "no executor can run it: dask: no worker has resources gpu=1",
    ),
]


@pytest.mark.parametrize(("reason", "text"), EXAMPLES, ids=[type(r).__name__ for r, _ in EXAMPLES])
def test_each_reason_says_what_blocks_in_one_line(reason: Reason, text: str) -> None:
    assert reason.text() == text
    assert "\n" not in reason.text()


def test_long_lists_of_runs_and_upstreams_are_cut_short() -> None:
    runs = tuple(f"r{i}" for i in range(5))
    assert QuotaFull("a", "cpu", 4, 4, runs).text().endswith("(runs r0, r1, r2 and 2 more)")
    assert Upstream(runs).text() == "waiting for upstream r0, r1, r2 and 2 more"


@pytest.mark.parametrize(("reason", "text"), EXAMPLES, ids=[type(r).__name__ for r, _ in EXAMPLES])
def test_as_dict_is_json_with_its_kind_text_and_fields(reason: Reason, text: str) -> None:
    answer = json.loads(json.dumps(as_dict(reason)))
    assert answer["kind"] == reason.kind
    assert answer["text"] == text


def test_as_dict_lists_the_fields_an_api_client_can_act_on() -> None:
    assert as_dict(QuotaFull("a", "cpu", 8, 8, ("r1",))) == {
        "kind": "quota_full",
        "text": "team quota: cpu 8 of 8 in use by team a (runs r1)",
        "team": "a",
        "resource": "cpu",
        "used": 8,
        "limit": 8,
        "runs": ["r1"],
    }


def test_every_kind_is_distinct() -> None:
    kinds = {type(r).kind for r, _ in EXAMPLES}
    assert len(kinds) == len({type(r) for r, _ in EXAMPLES}) == 9
