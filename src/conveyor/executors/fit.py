"""Does a task's resource request fit one worker of an engine? Pure: the adapters turn their
engine's view of its workers (Dask's ``scheduler_info``, Ray's nodes) into offers, and refuse at
submit a request that no single worker could ever take (engines let it wait forever)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from conveyor.resources import Resources, format_memory

Offer = Mapping[str, float]  # resource name -> how much one worker has


def wanted(resources: Resources) -> dict[str, int]:
    """The request by name (cpu, memory, gpu, custom names), zeros left out."""
    return {name: n for name, n in resources.as_dict().items() if n}


def fits(resources: Resources, offer: Offer) -> bool:
    return all(n <= offer.get(name, 0) for name, n in wanted(resources).items())


def refusal(resources: Resources, offers: Iterable[Offer], worker: str) -> str | None:
    """Why no ``worker`` can run it, in one line listing what they offer; None when one can (or
    when there is no worker to compare with)."""
    offers = list(offers)
    if not offers or any(fits(resources, offer) for offer in offers):
        return None
    shown = "; ".join(sorted({describe(offer) for offer in offers}))
    return f"no {worker} can run a task asking for {describe(wanted(resources))}: the workers offer {shown}"


def describe(amounts: Mapping[str, float]) -> str:
    """``cpu=2, gpu=1, memory=4GiB``."""
    parts = []
    for name, n in sorted(amounts.items()):
        parts.append(f"{name}={format_memory(int(n)) if name == 'memory' else f'{n:g}'}")
    return ", ".join(parts) or "nothing"
