"""A file target's path template filled from a task's parameters, kept where its template says.

    render("out/{name}.csv", {"name": "a"}, "task t")     -> "out/a.csv"
    render("out/{name}.csv", {"name": "../../x"}, ...)    -> ParameterError naming name

- No parameter's text may hold a ``..`` path component, whatever the template.
- A relative template's target stays under its *root*, the folders it names before its first
  field (``out`` above; the working directory for ``{name}.csv``): it stays relative, and
  resolved it stays there. A parameter cannot make it absolute or a URL.
- A template that is absolute (``/data/{day}.csv``, ``s3://bucket/{day}.csv``), or whose first
  folder is a parameter alone (``{to}/totals.csv``: the author lets that parameter choose the
  place, a folder or a URL), is rendered as it is (``..`` from a parameter is refused still).

Rendering is ``str.format``; the checks look at the text only when it holds ``..``, or when a
relative template renders to something absolute: a graph of 100,000 tasks pays almost nothing.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ParameterError
from conveyor.ids import shown

#: ``proto://``: a URL.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: Path separators in a parameter's text (a backslash too: a Windows path would escape).
_PARTS = re.compile(r"[/\\]")


@dataclass(frozen=True, slots=True)
class _Shape:
    anchored: bool  # absolute, a URL, or the first folder is a parameter: no root to keep to
    root: str  # the folders before the first field ("" : the working directory)


@functools.lru_cache(maxsize=4096)
def _shape(template: str) -> _Shape:
    if template.startswith(("/", "~")) or _URL.match(template) or template.startswith("file:"):
        return _Shape(True, "")
    head = template.split("{", 1)[0]
    first = re.split(r"[/\\]", template, maxsplit=1)[0]
    if head == "" and re.fullmatch(r"\{[^{}]*\}", first):
        return _Shape(True, "")  # "{to}/...": the parameter is the place
    root = posixpath.normpath(head.rpartition("/")[0]) if "/" in head else ""
    return _Shape(False, "" if root == "." else root)


class _Recording(string.Formatter):
    """``str.format`` that notes which parameter each piece of the text came from."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, str]] = []
        self._field = ""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        self._field = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        return super().get_field(field_name, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        text = super().format_field(value, format_spec)
        self.pieces.append((self._field, text))
        return text


def render(template: str, values: Mapping[str, Any], owner: str) -> str:
    """The path or URL ``template`` names for these values; a ``ParameterError`` naming the
    parameter and the target when a value would put it outside its root (see above)."""
    text = template.format(**values)
    shape = _shape(template)
    if ".." not in text and (shape.anchored or not _leaves_root(text)):
        return text  # the common case, decided without looking at the pieces
    recording = _Recording()
    recording.format(template, **values)
    for name, piece in recording.pieces:
        if ".." in _PARTS.split(piece):
            raise _outside(owner, name, values.get(name, piece), template, text, "holds '..'")
    if shape.anchored:
        return text
    resolved = posixpath.normpath(text.replace(os.sep, "/"))
    if shape.root:
        inside = resolved == shape.root or resolved.startswith(shape.root + "/")
    else:
        inside = resolved != ".." and not resolved.startswith("../")
    if _leaves_root(text) or not inside:
        pieces = recording.pieces
        named = (
            [n for n, p in pieces if _leaves_root(p)] or [n for n, p in pieces if p] or [n for n, _ in pieces]
        )
        name = named[0] if named else ""
        where = f"outside {shape.root}/" if shape.root else "outside the working directory"
        raise _outside(owner, name, values.get(name, ""), template, text, f"puts it {where}")
    return text


def _leaves_root(text: str) -> bool:
    """Is the rendered text absolute, a URL, or home-relative?"""
    return text.startswith(("/", "~", "\\")) or "://" in text or text.startswith("file:")


def _outside(owner: str, name: str, value: Any, template: str, text: str, why: str) -> ParameterError:
    return ParameterError(
        f"{owner}: parameter {name!r} = {shown(str(value))!r} {why}: output {template!r} would be "
        f"{shown(text)!r}; give a name without '..' or a leading '/'",
        {name: f"{why}: output {template!r} would be {shown(text)!r}"},
    )
