"""Which worker could ever take a request: the pure part of every engine adapter's ``check``."""

from __future__ import annotations

from conveyor.executors.fit import describe, fits, refusal, wanted
from conveyor.resources import Resources

SMALL = {"cpu": 1.0, "memory": 2.0 * 2**30}
GPU = {"cpu": 4.0, "memory": 16.0 * 2**30, "gpu": 1.0}


def test_a_request_fits_a_worker_with_enough_of_everything_it_names() -> None:
    assert fits(Resources(), SMALL)
    assert fits(Resources(cpu=4, gpu=1, memory=2**30), GPU)
    assert not fits(Resources(cpu=2), SMALL)
    assert not fits(Resources(gpu=1), SMALL)  # a resource the worker does not have at all
    assert not fits(Resources(custom={"fpga": 1}), GPU)


def test_one_worker_must_fit_it_whole_not_the_workers_together() -> None:
    asked = Resources(cpu=4, memory=20 * 2**30)  # cpu of one, memory of neither
    assert refusal(asked, [SMALL, GPU], "Dask worker") == (
        "no Dask worker can run a task asking for cpu=4, memory=20GiB: "
        "the workers offer cpu=1, memory=2GiB; cpu=4, gpu=1, memory=16GiB"
    )
    assert refusal(Resources(gpu=1), [SMALL, GPU], "Dask worker") is None
    assert refusal(Resources(gpu=1), [], "Dask worker") is None  # none joined yet: cannot tell


def test_zeros_are_not_asked_for() -> None:
    assert wanted(Resources()) == {"cpu": 1}
    assert describe({}) == "nothing"
