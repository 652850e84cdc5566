"""The content hashes the record, ``reproduce`` and the cache share: an environment by its lock
file (else its installed distributions), a file or folder by its bytes (an fsspec URL by what
its store says), a task by its code and the project code it calls."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import fsspec

from conveyor.provenance.fingerprints import code_hash, environment_hash, file_fingerprint


def test_the_environment_is_its_lock_file_when_the_project_has_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "conveyor.toml").write_text("")
    without, kind = environment_hash(project / "src")
    assert kind == "distributions" and len(without) == 64  # what is installed
    assert environment_hash(project) == (without, "distributions")

    (project / "requirements.txt").write_text("numpy==2.1\n")  # pins without hashes: not a lock
    assert environment_hash(project)[1] == "distributions"
    (project / "requirements.txt").write_text("numpy==2.1 --hash=sha256:abc\n")
    assert environment_hash(project / "src") == (
        hashlib.sha256(b"numpy==2.1 --hash=sha256:abc\n").hexdigest(),
        "lock:requirements.txt",
    )
    (project / "uv.lock").write_text("version = 1\n")
    first = environment_hash(project / "src")
    assert first[1] == "lock:uv.lock"
    (project / "uv.lock").write_text("version = 2\n")
    assert environment_hash(project / "src")[0] != first[0]
    (tmp_path / "poetry.lock").write_text("")  # above the project's root: another project's
    (project / "uv.lock").unlink()
    (project / "requirements.txt").unlink()
    assert environment_hash(project)[1] == "distributions"


def test_a_file_or_folder_is_its_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes(b"x,y\n1,2\n")
    assert file_fingerprint(str(f)) == {
        "path": str(f),
        "size": 8,
        "sha256": hashlib.sha256(b"x,y\n1,2\n").hexdigest(),
    }
    folder = tmp_path / "parts"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "p1").write_text("one")
    (folder / "p2").write_text("two")
    before = file_fingerprint(str(folder))
    assert before["size"] == 6
    (folder / "sub" / "p1").rename(folder / "sub" / "p3")  # same bytes, another name
    assert file_fingerprint(str(folder))["sha256"] != before["sha256"]


def test_a_url_is_what_its_store_knows(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/fp/data.bin", b"12345")
    got = file_fingerprint("memory://fp/data.bin")
    assert got["path"] == "memory://fp/data.bin" and got["size"] == 5
    assert got["sha256"] is None  # the memory store keeps no checksum: said, not invented


def _module(root: Path, name: str, source: str) -> object:
    path = root / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    sys.path.insert(0, str(root))
    try:
        sys.modules.pop(name, None)
        return __import__(name)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(name, None)


def test_a_tasks_code_is_its_source_and_the_project_code_it_calls(tmp_path: Path) -> None:
    source = """
        import json

        def helper(x):
            return x + 1

        def unrelated():
            return 0

        def task(x):
            return json.dumps(helper(x))
        """
    base = code_hash(_module(tmp_path, "m1", source).task, tmp_path)  # type: ignore[attr-defined]
    again = code_hash(_module(tmp_path, "m1", source).task, tmp_path)  # type: ignore[attr-defined]
    assert base == again  # stable across imports
    edited_helper = source.replace("x + 1", "x + 2")
    changed = code_hash(_module(tmp_path, "m1", edited_helper).task, tmp_path)  # type: ignore[attr-defined]
    assert changed != base
    edited_unrelated = source.replace("return 0", "return 1")
    same = code_hash(_module(tmp_path, "m1", edited_unrelated).task, tmp_path)  # type: ignore[attr-defined]
    assert same == base
