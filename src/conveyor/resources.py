"""Resource requests (cpu, memory, gpu, custom names) and the capacity that admits them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import DefinitionError, ResourceError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: int | float | str, owner: str = "memory") -> int:
    """Bytes from ``2GiB``, ``512M``, ``1.5G`` or a plain number of bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    m = _SIZE.match(str(value))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise DefinitionError(f"{owner}: memory {value!r} is not a size; write it like 512MiB or 2GB")
    return int(float(m.group(1)) * _UNITS[unit])


def format_memory(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.4g}{unit}"
    return f"{n}B"


@dataclass(frozen=True, slots=True)
class Resources:
    """What one attempt of a task occupies while it runs."""

    cpu: int = 1
    memory: int = 0
    gpu: int = 0
    custom: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, owner: str) -> Resources:
        given = dict(spec or {})
        rest = dict(given)
        memory = parse_memory(rest.pop("memory", 0), owner)
        counts = {name: _whole(name, value, owner) for name, value in rest.items()}
        cpu, gpu = counts.pop("cpu", 1), counts.pop("gpu", 0)
        if memory < 0:
            raise DefinitionError(f"{owner}: resources memory cannot be negative, got {given['memory']!r}")
        if cpu < 1:
            raise DefinitionError(f"{owner}: resources cpu must be at least 1, got {cpu}")
        return cls(cpu, memory, gpu, counts)

    def as_dict(self) -> dict[str, int]:
        return {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu, **self.custom}


def _whole(name: str, value: Any, owner: str) -> int:
    """A resource amount: a whole number >= 0."""
    bad = f"{owner}: resources {name} must be a whole number >= 0, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DefinitionError(bad)
    try:
        number = float(value)
    except ValueError:
        raise DefinitionError(bad) from None
    if number != int(number) or number < 0:
        raise DefinitionError(bad)
    return int(number)


def machine_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2**40


@dataclass(slots=True)
class Capacity:
    """What the executor can run at once. A custom resource not listed here is unlimited."""

    cpu: int
    memory: int
    gpu: int = 0
    custom: dict[str, int] = field(default_factory=dict)

    @classmethod
    def local(cls, workers: int, extra: Mapping[str, int] | None = None) -> Capacity:
        extra = dict(extra or {})
        gpu = int(extra.pop("gpu", 0))
        memory = int(extra.pop("memory", machine_memory()))
        extra.pop("cpu", None)
        return cls(cpu=workers, memory=memory, gpu=gpu, custom=extra)

    def check(self, owner: str, req: Resources) -> None:
        """Refuse a request that could never be admitted (it would wait forever)."""
        if req.cpu > self.cpu:
            raise ResourceError(
                f"task {owner} asks for cpu={req.cpu} but there are {self.cpu} worker slots; "
                f"run with --workers {req.cpu} or more"
            )
        if req.memory > self.memory:
            raise ResourceError(
                f"task {owner} asks for memory={format_memory(req.memory)} but this machine has "
                f"{format_memory(self.memory)}"
            )
        if req.gpu > self.gpu:
            raise ResourceError(
                f"task {owner} asks for gpu={req.gpu} but {self.gpu} are configured; "
                f"run with --resource gpu={req.gpu} if the machine has them"
            )
        for name, amount in req.custom.items():
            if name in self.custom and amount > self.custom[name]:
                raise ResourceError(
                    f"task {owner} asks for {name}={amount} but only {self.custom[name]} exist; "
                    f"raise it with --resource {name}={amount}"
                )
