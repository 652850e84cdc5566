"""Where two versions of an output differ, said the way a person checks it: for CSV the first
differing row, for text a unified diff excerpt, for an image a difference picture, else the
first differing byte. Identical bytes are the only "identical"."""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from pathlib import Path

IMAGES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
TABLES = {".csv": ",", ".tsv": "\t"}
#: At most this many lines of a text diff are shown.
DIFF_LINES = 12


@dataclass(frozen=True, slots=True)
class Difference:
    """How a reproduced file differs from the original: one line, more lines, and for images
    the path of the difference picture."""

    summary: str
    detail: str = ""
    picture: str | None = None


def compare(original: Path, reproduced: Path) -> Difference | None:
    """None when the two files hold the same bytes; else where they first differ. A difference
    picture of two images is saved next to the reproduced one (``NAME.diff.png``)."""
    a, b = original.read_bytes(), reproduced.read_bytes()
    if a == b:
        return None
    suffix = reproduced.suffix.lower()
    if suffix in IMAGES:
        return _image(original, reproduced)
    text_a, text_b = _text(a), _text(b)
    if text_a is not None and text_b is not None:
        if suffix in TABLES:
            return _table(text_a, text_b, TABLES[suffix])
        return _diff(text_a, text_b, original.name)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return Difference(f"bytes differ from offset {at} ({len(a)} bytes, reproduced {len(b)})")


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _table(a: str, b: str, delimiter: str) -> Difference:
    rows_a = list(csv.reader(io.StringIO(a), delimiter=delimiter))
    rows_b = list(csv.reader(io.StringIO(b), delimiter=delimiter))
    for n, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=False), start=1):
        if ra != rb:
            col = next(
                (i for i, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y), min(len(ra), len(rb))
            )
            name = rows_a[0][col] if rows_a and col < len(rows_a[0]) else f"#{col + 1}"
            return Difference(
                f"row {n} differs first (column {name})",
                f"original:   {delimiter.join(ra)}\nreproduced: {delimiter.join(rb)}",
            )
    if len(rows_a) != len(rows_b):
        return Difference(
            f"{len(rows_a)} rows, reproduced {len(rows_b)}: the first {min(len(rows_a), len(rows_b))} agree"
        )
    return _diff(a, b, "table")  # same cells, other bytes: quoting or line endings


def _diff(a: str, b: str, name: str) -> Difference:
    lines = list(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), f"original/{name}", f"reproduced/{name}", n=1, lineterm=""
        )
    )
    changed = next((i for i, line in enumerate(lines) if line.startswith("@@")), 0)
    at = lines[changed] if lines else ""
    if not lines:  # the same lines: whitespace at the ends or line endings
        return Difference("the same lines, other line endings or trailing whitespace")
    more = f"\n... {len(lines) - DIFF_LINES} more diff lines" if len(lines) > DIFF_LINES else ""
    return Difference(f"text differs ({at.strip('@ ')})", "\n".join(lines[:DIFF_LINES]) + more)


def _image(original: Path, reproduced: Path) -> Difference:
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return Difference("image bytes differ (install Pillow for a difference picture)")
    with Image.open(original) as ia, Image.open(reproduced) as ib:
        if ia.size != ib.size:
            return Difference(f"image size {ia.size[0]}x{ia.size[1]}, reproduced {ib.size[0]}x{ib.size[1]}")
        pa, pb = ia.convert("RGBA"), ib.convert("RGBA")
    r, g, b, a = ImageChops.difference(pa, pb).split()
    delta = ImageChops.lighter(ImageChops.lighter(r, g), ImageChops.lighter(b, a))  # any band
    box = delta.getbbox()
    if box is None:
        return Difference("the same pixels; the files differ in metadata or compression")
    mask = delta.point(lambda v: 255 if v else 0)
    changed = sum(mask.histogram()[255:])
    picture = reproduced.with_name(reproduced.stem + ".diff.png")
    shown = pb.convert("RGB").point(lambda v: v // 3)  # the reproduced image dimmed, changes in red
    shown.paste((255, 0, 0), mask=mask)
    shown.save(picture)
    total = pa.size[0] * pa.size[1]
    return Difference(
        f"{changed} of {total} pixels differ, within box {box}",
        f"difference picture: {picture}",
        str(picture),
    )
