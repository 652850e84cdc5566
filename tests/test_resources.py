"""Resource requests, memory sizes, and the capacity check that refuses what could never run."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import DefinitionError, ResourceError
from conveyor.resources import Capacity, Resources, format_memory, parse_memory

KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GiB", 2 * GiB),
        ("2gib", 2 * GiB),
        ("2Gi", 2 * GiB),
        ("512MiB", 512 * MiB),
        ("512Mi", 512 * MiB),
        ("4KiB", 4 * KiB),
        ("1TiB", TiB),
        ("512M", 512 * 10**6),
        ("512MB", 512 * 10**6),
        ("1.5G", 1_500_000_000),
        ("2GB", 2 * 10**9),
        ("3k", 3000),
        ("1T", 10**12),
        ("100", 100),
        ("100b", 100),
        (" 2 GiB ", 2 * GiB),
        (".5GiB", GiB // 2),
        (1024, 1024),
        (1.5e9, 1_500_000_000),
    ],
)
def test_parse_memory_understands_decimal_and_binary_units(text: Any, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "2 GiB RAM", "-1G", "1.5.5G", "5x", "G", "", True])
def test_parse_memory_refuses_what_is_not_a_size(text: Any) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_memory(text, "task train")
    assert str(err.value) == f"task train: memory {text!r} is not a size; write it like 512MiB or 2GB"


@pytest.mark.parametrize(
    ("size", "text"),
    [(100, "100B"), (KiB, "1KiB"), (1536 * MiB, "1.5GiB"), (512 * MiB, "512MiB"), (3 * GiB, "3GiB")],
)
def test_format_memory_is_short_and_binary(size: int, text: str) -> None:
    assert format_memory(size) == text


def test_resources_default_to_one_cpu_and_nothing_else() -> None:
    r = Resources.parse(None, "task t")
    assert r == Resources(cpu=1, memory=0, gpu=0, custom={})
    assert r.as_dict() == {"cpu": 1, "memory": 0, "gpu": 0}


def test_resources_parse_memory_strings_and_keep_custom_names() -> None:
    r = Resources.parse({"cpu": 4, "memory": "8GiB", "gpu": 1, "db_connections": 2}, "task t")
    assert r == Resources(cpu=4, memory=8 * GiB, gpu=1, custom={"db_connections": 2})
    assert r.as_dict() == {"cpu": 4, "memory": 8 * GiB, "gpu": 1, "db_connections": 2}


def test_resources_parse_does_not_consume_the_callers_spec() -> None:
    spec = {"cpu": 2, "memory": "1GiB"}
    Resources.parse(spec, "task t")
    assert spec == {"cpu": 2, "memory": "1GiB"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cpu": 0}, "task t: resources cpu must be at least 1, got 0"),
        ({"cpu": -2}, "task t: resources cpu must be a whole number >= 0, got -2"),
        ({"cpu": "many"}, "task t: resources cpu must be a whole number >= 0, got 'many'"),
        ({"db": None}, "task t: resources db must be a whole number >= 0, got None"),
        ({"db": -1}, "task t: resources db must be a whole number >= 0, got -1"),
        ({"memory": "huge"}, "task t: memory 'huge' is not a size"),
    ],
)
def test_resources_parse_refuses_bad_requests(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as err:
        Resources.parse(spec, "task t")
    assert message in str(err.value)


# -- capacity -------------------------------------------------------------------------------------
def test_capacity_admits_what_fits_and_ignores_unlisted_custom_resources() -> None:
    cap = Capacity(cpu=4, memory=16 * GiB, gpu=1, custom={"db": 2})
    cap.check("train", Resources(cpu=4, memory=16 * GiB, gpu=1, custom={"db": 2, "licence": 99}))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            Resources(cpu=8),
            "task train asks for cpu=8 but there are 4 worker slots; run with --workers 8 or more",
        ),
        (
            Resources(memory=32 * GiB),
            "task train asks for memory=32GiB but this machine has 16GiB",
        ),
        (
            Resources(gpu=2),
            "task train asks for gpu=2 but 1 are configured; "
            "run with --resource gpu=2 if the machine has them",
        ),
        (
            Resources(custom={"db": 3}),
            "task train asks for db=3 but only 2 exist; raise it with --resource db=3",
        ),
    ],
)
def test_capacity_check_refuses_a_request_that_could_never_run(request_: Resources, message: str) -> None:
    cap = Capacity(cpu=4, memory=16 * GiB, gpu=1, custom={"db": 2})
    with pytest.raises(ResourceError) as err:
        cap.check("train", request_)
    assert str(err.value) == message


def test_local_capacity_takes_workers_as_cpus_and_extras_as_resources() -> None:
    cap = Capacity.local(3, {"gpu": 2, "memory": 4 * GiB, "cpu": 99, "db": 1})
    assert (cap.cpu, cap.memory, cap.gpu, cap.custom) == (3, 4 * GiB, 2, {"db": 1})


def test_local_capacity_defaults_to_the_machine_memory_and_no_gpu() -> None:
    cap = Capacity.local(2)
    assert cap.cpu == 2 and cap.gpu == 0 and cap.custom == {}
    assert cap.memory > 0
    with pytest.raises(ResourceError, match="gpu=1 but 0 are configured"):
        cap.check("t", Resources(gpu=1))
