"""What the fingerprints see: a helper's edit changes a task's code hash, a library does not; a
lock file is the environment; a file's content, not its name or time, is its fingerprint."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path
from types import ModuleType

from conveyor.provenance.fingerprints import code_hash, environment_hash, file_fingerprint

SOURCE = """
import json

RATE = {rate}


def helper(x):
    return x * RATE


def unrelated():
    return {unrelated}


def task(x):
    return json.dumps(helper(x))
"""


def load(root: Path, name: str, rate: int = 2, unrelated: int = 0) -> ModuleType:
    path = root / f"{name}.py"
    path.write_text(textwrap.dedent(SOURCE.format(rate=rate, unrelated=unrelated)))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_code_hash_follows_what_the_task_calls_in_the_project(tmp_path: Path) -> None:
    base = code_hash(load(tmp_path, "m1").task, tmp_path)
    assert code_hash(load(tmp_path, "m2").task, tmp_path) == base  # same code, another module
    assert code_hash(load(tmp_path, "m3", unrelated=5).task, tmp_path) == base  # not called
    assert code_hash(load(tmp_path, "m4", rate=3).task, tmp_path) != base  # a constant it reads
    edited = load(tmp_path, "m5")
    (tmp_path / "m5.py").write_text((tmp_path / "m5.py").read_text().replace("x * RATE", "x * RATE + 1"))
    import linecache

    linecache.checkcache()
    assert code_hash(edited.task, tmp_path) != base  # the helper's source changed


def test_the_environment_is_the_lock_file_when_there_is_one(tmp_path: Path) -> None:
    digest, kind = environment_hash(tmp_path)
    assert kind == "distributions" and len(digest) == 64
    (tmp_path / "uv.lock").write_text("version = 1\n")
    locked, kind = environment_hash(tmp_path)
    assert kind == "lock:uv.lock" and locked != digest
    (tmp_path / "uv.lock").write_text("version = 2\n")
    assert environment_hash(tmp_path)[0] != locked


def test_a_file_is_known_by_its_content(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    first = file_fingerprint(str(f))
    assert first["size"] == 8 and first["path"] == str(f)
    os.utime(f, (0, 0))
    assert file_fingerprint(str(f))["sha256"] == first["sha256"]  # a touch changes nothing
    f.write_text("a,b\n1,3\n")
    assert file_fingerprint(str(f))["sha256"] != first["sha256"]
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "x").write_text("1")
    before = file_fingerprint(str(folder))["sha256"]
    (folder / "y").write_text("2")
    assert file_fingerprint(str(folder))["sha256"] != before
