"""The upstream system both versions of the pipeline dump from: a shop's order lines, made up
but deterministic (a random generator seeded with the day), so the rows a day must end with
in the warehouse are known exactly. ``tests/test_exactly_once.py`` compares the warehouse with
``sales(day)``."""

from __future__ import annotations

import random
from datetime import date

#: The columns of an order line, in the dump's order (the warehouse adds ``day``).
COLUMNS = ("order_id", "sku", "quantity", "price_cents")
PRICES = {"apple": 99, "bread": 249, "cheese": 1190, "dates": 450, "eggs": 329}


def sales(day: date) -> list[dict[str, object]]:
    """The day's order lines: 20 to 40 of them, each with an order id unique to the day."""
    rng = random.Random(day.toordinal())
    rows: list[dict[str, object]] = []
    for n in range(rng.randint(20, 40)):
        sku = rng.choice(sorted(PRICES))
        rows.append(
            {
                "order_id": f"{day:%Y%m%d}-{n:03d}",
                "sku": sku,
                "quantity": rng.randint(1, 6),
                "price_cents": PRICES[sku],
            }
        )
    return rows
