"""``conveyor run`` without Typer: its command line read here, for a quick start.

Typer builds every command of the app and, for each option it converts, a pydantic type
adapter: together more than the whole run of a small pipeline. ``conveyor run`` with options
this parser knows (those of ``app.run``; tests/cli/test_quick.py checks they are the same)
runs at once; anything else (``--help``, an unknown option, a value that does not parse, a
missing target) goes to Typer, which answers as it always does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The options of ``conveyor run``: each spelling, its parameter, and how its value is read
#: (``None``: a flag; ``list``: repeatable).
OPTIONS: dict[str, tuple[str, Any]] = {
    "--param": ("param", list),
    "-p": ("param", list),
    "--force": ("force", None),
    "--new": ("new", None),
    "--workers": ("workers", int),
    "-w": ("workers", int),
    "--resource": ("resource", list),
    "-r": ("resource", list),
    "--grace": ("grace", float),
    "--executor": ("executor", str),
    "-e": ("executor", str),
    "--executor-address": ("executor_address", str),
    "--db": ("db", str),
    "--no-cache": ("no_cache", None),
}


def parse(args: Sequence[str]) -> dict[str, Any] | None:
    """``conveyor run``'s arguments (after ``run``) as ``running.run``'s keywords, or None if
    Typer should read them."""
    out: dict[str, Any] = {}
    targets: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            targets.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
        elif len(arg) > 2:  # -pday=1, -w2: the rest of a short option is its value
            name, eq, value = arg[:2], "=", arg[2:]
        else:
            name, eq, value = arg, "", ""
        if name not in OPTIONS:
            return None  # --help, --, an unknown option: Typer says what it makes of it
        key, kind = OPTIONS[name]
        if kind is None:
            if eq:
                return None
            out[key] = True
            continue
        if not eq:
            if i == len(args):
                return None
            value = args[i]
            i += 1
        if kind is list:
            out.setdefault(key, []).append(value)
            continue
        try:
            out[key] = kind(value)
        except ValueError:
            return None
    if len(targets) != 1 or out.get("workers", 1) < 1:
        return None
    out["target"] = targets[0]
    return out


def main(args: Sequence[str]) -> int | None:
    """Run ``conveyor run ARGS`` if this module reads them; its exit code, or None."""
    keywords = parse(args)
    if keywords is None:
        return None
    from conveyor.cli import running

    target = keywords.pop("target")
    return running.run(target, **keywords)
