"""A job survives its trip to a worker whole: every field, ``--force``'s ``replace`` too (it was
dropped, and a forced run's table targets found their partition done instead of replacing it)."""

from __future__ import annotations

from conveyor.runner import Job, pack


def test_a_packed_job_is_the_same_job_in_the_worker() -> None:
    job = Job("run", "iid", 2, "log", "art", {"x": "ref"}, "p.py:daily", {"days": "3"}, "/w", None, True)
    assert Job(*pack(job, 7)[1:]) == job
