"""A small synthetic shop: products, customers and a seeded stream of orders.

Every day's orders come from a random generator seeded with that day, so the data for a given
day is the same whenever (and however often) the database is created.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    price_cents: int


PRODUCTS = (
    Product("COF-250", "Coffee beans 250g", 899),
    Product("TEA-100", "Green tea 100g", 549),
    Product("MUG-001", "Stoneware mug", 1250),
    Product("GRN-001", "Hand grinder", 3990),
    Product("FLT-100", "Paper filters x100", 399),
)

_FIRST = (
    "Ada",
    "Boris",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaja",
    "Luis",
)
_LAST = ("Meyer", "Novak", "Okafor", "Petit", "Quinn", "Rossi", "Sato", "Toure", "Usman", "Varga")
_CITIES = ("Berlin", "Lyon", "Porto", "Krakow", "Ghent", "Turin")
CUSTOMERS = tuple(
    (f"{first} {last}", _CITIES[(i * 7 + j) % len(_CITIES)])
    for i, first in enumerate(_FIRST)
    for j, last in enumerate(_LAST)
    if (i + j) % 3 == 0
)

SCHEMA = """
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    ordered_at TEXT NOT NULL
);
CREATE INDEX orders_ordered_at ON orders(ordered_at);
CREATE TABLE order_lines (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE coverage (first_day TEXT NOT NULL, last_day TEXT NOT NULL);
"""

#: One row of a day's sales dump: an order line with its order, customer and product.
DUMP_COLUMNS = ("order_id", "ordered_at", "customer", "city", "sku", "product", "quantity", "amount")

DUMP_QUERY = """
SELECT o.id, o.ordered_at, c.name, c.city, p.sku, p.name, l.quantity, l.quantity * l.price_cents
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_lines l ON l.order_id = o.id
JOIN products p ON p.id = l.product_id
WHERE o.ordered_at >= ? AND o.ordered_at < ?
ORDER BY o.id, p.sku
"""


@dataclass(frozen=True, slots=True)
class Order:
    customer: int  # index into CUSTOMERS
    at: datetime
    lines: tuple[tuple[int, int], ...]  # (index into PRODUCTS, quantity)


def orders_of(day: date) -> list[Order]:
    """The shop's orders on ``day``: 60 to 200 of them, the same on every call."""
    rng = random.Random(f"shop-{day.isoformat()}")
    count = rng.randint(60, 200)
    weights = (5, 3, 2, 1, 4)
    orders = []
    for _ in range(count):
        at = datetime.combine(day, time(8)) + timedelta(seconds=rng.randrange(12 * 3600))
        n = rng.choice((1, 1, 1, 2, 2, 3))
        picked = set(rng.choices(range(len(PRODUCTS)), weights=weights, k=n))
        lines = tuple((p, rng.choice((1, 1, 1, 2, 3))) for p in sorted(picked))
        orders.append(Order(rng.randrange(len(CUSTOMERS)), at, lines))
    orders.sort(key=lambda o: o.at)
    return orders


def days_between(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def create_database(path: str, first: date, last: date) -> int:
    """Create the shop database at ``path`` with the orders of ``first`` .. ``last``; return the count."""
    con = sqlite3.connect(path)
    try:
        with con:
            con.executescript(SCHEMA)
            con.executemany(
                "INSERT INTO products (id, sku, name, price_cents) VALUES (?, ?, ?, ?)",
                [(i + 1, p.sku, p.name, p.price_cents) for i, p in enumerate(PRODUCTS)],
            )
            con.executemany(
                "INSERT INTO customers (id, name, city) VALUES (?, ?, ?)",
                [(i + 1, name, city) for i, (name, city) in enumerate(CUSTOMERS)],
            )
            con.execute("INSERT INTO coverage VALUES (?, ?)", (first.isoformat(), last.isoformat()))
            total = 0
            for day in days_between(first, last):
                for order in orders_of(day):
                    total += 1
                    con.execute(
                        "INSERT INTO orders (id, customer_id, ordered_at) VALUES (?, ?, ?)",
                        (total, order.customer + 1, order.at.isoformat(sep=" ")),
                    )
                    con.executemany(
                        "INSERT INTO order_lines VALUES (?, ?, ?, ?)",
                        [(total, p + 1, q, PRODUCTS[p].price_cents) for p, q in order.lines],
                    )
    finally:
        con.close()
    return total


def coverage(con: sqlite3.Connection) -> tuple[date, date]:
    """The first and last day the database holds orders for."""
    first, last = con.execute("SELECT first_day, last_day FROM coverage").fetchone()
    return date.fromisoformat(first), date.fromisoformat(last)


def cents(amount: int) -> str:
    """``1234`` cents as ``"12.34"``."""
    return f"{amount // 100}.{amount % 100:02d}"


def parse_cents(text: str) -> int:
    """``"12.34"`` as ``1234`` cents."""
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0")[:2])
