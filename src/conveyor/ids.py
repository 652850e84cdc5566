"""Ids as users type them: which text can name a run or a backfill at all (checked before any
query, so that no store is asked about 70,000 characters), and text cut short for messages and
logs.

A run's id is like ``20261122-081502-1a2b3c``, a backfill's like ``bf-20261122-081502-1a2b``;
either may be given by a prefix that only it has.
"""

from __future__ import annotations

import re

#: The longest id a store holds (its column's width).
MAX_ID = 32

#: What an id is made of.
_ID = re.compile(r"[A-Za-z0-9._-]+")

#: What a message says of a text that cannot be an id.
RULE = f"an id is at most {MAX_ID} letters, digits, '-', '_' or '.'"

#: Text in a message or a log line is cut to this many characters.
SHOWN = 80


def plausible(text: str) -> bool:
    """Can ``text`` be an id, or a prefix of one?"""
    return 0 < len(text) <= MAX_ID and _ID.fullmatch(text) is not None


def shown(text: str, limit: int = SHOWN) -> str:
    """``text`` for a message or a log line: at most ``limit`` characters, cut with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["MAX_ID", "RULE", "plausible", "shown"]
