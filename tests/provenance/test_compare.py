"""How a reproduced output differs from the original, as a person checks it: the first differing
CSV row, a diff excerpt for text, a difference picture for images, else a byte offset."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from conveyor.provenance.compare import compare


def _pair(tmp_path: Path, name: str, a: bytes, b: bytes) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    (tmp_path / "a" / name).write_bytes(a)
    (tmp_path / "b" / name).write_bytes(b)
    return tmp_path / "a" / name, tmp_path / "b" / name


def test_identical_bytes_are_identical(tmp_path: Path) -> None:
    assert compare(*_pair(tmp_path, "x.csv", b"a,b\n", b"a,b\n")) is None


def test_a_csv_says_its_first_differing_row_and_column(tmp_path: Path) -> None:
    diff = compare(
        *_pair(tmp_path, "t.csv", b"day,total\n1,10\n2,20\n3,30\n", b"day,total\n1,10\n2,21\n3,31\n")
    )
    assert diff is not None
    assert diff.summary == "row 3 differs first (column total)"
    assert diff.detail == "original:   2,20\nreproduced: 2,21"
    shorter = compare(*_pair(tmp_path, "s.csv", b"a\n1\n2\n", b"a\n1\n"))
    assert shorter is not None and shorter.summary == "3 rows, reproduced 2: the first 2 agree"


def test_text_gets_a_diff_excerpt(tmp_path: Path) -> None:
    diff = compare(*_pair(tmp_path, "r.md", b"# Report\n\ntotal 10\n", b"# Report\n\ntotal 11\n"))
    assert diff is not None
    assert "-total 10" in diff.detail and "+total 11" in diff.detail


def test_an_image_gets_a_difference_picture_next_to_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b" / "a.png"
    b.parent.mkdir()
    img = Image.new("RGB", (20, 10), "white")
    img.save(a)
    img.putpixel((3, 4), (0, 0, 0))
    img.putpixel((5, 6), (0, 0, 0))
    img.save(b)
    diff = compare(a, b)
    assert diff is not None and diff.picture is not None
    assert diff.summary == "2 of 200 pixels differ, within box (3, 4, 6, 7)"
    with Image.open(diff.picture) as pic:
        assert Path(diff.picture).parent == b.parent
        assert pic.getpixel((3, 4)) == (255, 0, 0) and pic.getpixel((0, 0)) != (255, 0, 0)
    Image.new("RGB", (20, 11), "white").save(b)
    resized = compare(a, b)
    assert resized is not None and resized.summary == "image size 20x10, reproduced 20x11"


def test_other_bytes_say_where_they_first_differ(tmp_path: Path) -> None:
    diff = compare(*_pair(tmp_path, "x.bin", b"\x00\x01\xff\x02", b"\x00\x01\xfe\x02"))
    assert diff is not None and diff.summary == "bytes differ from offset 2 (4 bytes, reproduced 4)"
