"""Targets: atomic writes, staging, local paths and fsspec URLs (through memory://)."""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from conveyor.errors import TargetError
from conveyor.targets import FileTarget, Target, flatten, rebuild


@pytest.fixture
def bucket() -> Iterator[str]:
    """A fresh directory in fsspec's in-memory file system, removed afterwards."""
    root = f"memory://conveyor-test-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _memory_ls(url: str) -> list[str]:
    fs = fsspec.filesystem("memory")
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.removeprefix("memory://"), detail=False))


# -- identity and paths --------------------------------------------------------------------------
def test_a_target_is_identified_by_its_url() -> None:
    assert FileTarget("data/a.csv") == FileTarget(Path("data/a.csv"))
    assert FileTarget("file:///tmp/a.csv") == FileTarget("/tmp/a.csv")
    assert FileTarget("data/a.csv") != FileTarget("data/b.csv")
    assert len({FileTarget("x"), FileTarget("x")}) == 1
    assert str(FileTarget("s3://b/k.csv")) == "s3://b/k.csv"
    assert repr(FileTarget("a.csv")) == "FileTarget('a.csv')"
    assert isinstance(FileTarget("a"), Target)


def test_an_empty_path_is_refused() -> None:
    with pytest.raises(TargetError, match="a FileTarget needs a path or URL, got an empty string"):
        FileTarget("")


def test_a_local_target_is_a_path_a_remote_one_is_not(tmp_path: Path) -> None:
    local = FileTarget(tmp_path / "a.txt")
    local.write_text("hi")
    with open(local) as f:  # os.fspath works: libraries that want a path can take the target
        assert f.read() == "hi"
    remote = FileTarget("memory://bucket/a.txt")
    assert not remote.is_local
    assert remote.path == "memory://bucket/a.txt"
    with pytest.raises(TypeError, match=r"memory://bucket/a\.txt is remote; use target\.open"):
        os.fspath(remote)


# -- atomic writes (local) -----------------------------------------------------------------------
def test_write_and_read_round_trip_creating_parent_directories(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "deep" / "er" / "a.txt")
    assert not t.exists()
    t.write_text("héllo\n")
    assert t.exists()
    assert t.read_text() == "héllo\n"
    b = FileTarget(tmp_path / "b.bin")
    b.write_bytes(b"\x00\x01")
    assert b.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "deep"]  # no temp files left


def test_an_exception_inside_a_write_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "out.csv")
    with pytest.raises(RuntimeError, match="half way"), t.open("w") as f:
        f.write("id\n1\n")
        raise RuntimeError("half way")
    assert not t.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_exception_inside_a_rewrite_keeps_the_old_content(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "out.csv")
    t.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), t.open("w") as f:
        f.write("new, partial")
        raise KeyboardInterrupt
    assert t.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_reader_never_sees_a_half_written_target(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "out.csv")
    with t.open("w") as f:
        f.write("partial")
        f.flush()
        assert not t.exists()  # the data sits under a temporary name until the write completes
        (tmp,) = tmp_path.iterdir()
        assert tmp.name.startswith(".out.tmp-") and tmp.name.endswith(".csv")
    assert t.read_text() == "partial"


def test_an_atomic_file_closed_without_with_is_committed(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "a.txt")
    f = t.open("w")
    f.write("one\n")
    f.writelines(["two\n"])
    f.close()
    f.close()  # closing twice is harmless
    assert t.read_text() == "one\ntwo\n"


def test_appending_keeps_the_existing_content(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "log.txt")
    t.write_text("one\n")
    with t.open("a") as f:
        f.write("two\n")
    assert t.read_text() == "one\ntwo\n"


def test_exclusive_create_refuses_an_existing_target(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "once.txt")
    t.write_text("first")
    with pytest.raises(FileExistsError), t.open("x") as f:
        f.write("second")
    assert t.read_text() == "first"


def test_remove_deletes_a_file_or_a_directory_tree(tmp_path: Path) -> None:
    f = FileTarget(tmp_path / "a.txt")
    f.write_text("x")
    d = FileTarget(tmp_path / "dir")
    FileTarget(tmp_path / "dir" / "sub" / "b.txt").write_text("y")
    f.remove()
    d.remove()
    d.remove()  # removing what is not there is fine
    assert not f.exists() and not d.exists()
    assert list(tmp_path.iterdir()) == []


# -- staging -------------------------------------------------------------------------------------
def test_temporary_is_a_hidden_sibling_that_keeps_the_suffix(tmp_path: Path) -> None:
    final = FileTarget(tmp_path / "plots" / "sales.png")
    staged = final.temporary()
    head, _, name = staged.url.rpartition("/")
    assert head == str(tmp_path / "plots")
    assert name.startswith(".sales.tmp-") and name.endswith(".png")
    assert (tmp_path / "plots").is_dir()  # so a library can write to staged.path at once
    assert final.temporary() != staged  # every staging gets its own name


def test_temporary_of_a_bare_name_and_a_dot_file() -> None:
    assert FileTarget("report").temporary().url.startswith(".report.tmp-")
    dot = FileTarget("dir/.env").temporary().url
    assert dot.startswith("dir/..env.tmp-")
    assert not dot.endswith(".env")


def test_staged_write_then_commit_to_puts_the_data_in_place(tmp_path: Path) -> None:
    final = FileTarget(tmp_path / "out" / "data.csv")
    staged = final.temporary()
    with staged.open("w") as f:
        f.write("id\n")
        f.flush()
        assert staged.exists()  # a staged target is written directly, not through another temp
        assert [p.name for p in (tmp_path / "out").iterdir()] == [staged.url.rsplit("/", 1)[1]]
    assert not final.exists()
    staged.commit_to(final)
    assert final.read_text() == "id\n"
    assert not staged.exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["data.csv"]


def test_a_staged_path_can_be_written_by_any_library_then_committed(tmp_path: Path) -> None:
    final = FileTarget(tmp_path / "db.sqlite")
    staged = final.temporary()
    Path(staged.path).write_bytes(b"SQLite format 3\x00")
    staged.commit_to(final)
    assert final.read_bytes() == b"SQLite format 3\x00"


def test_discard_removes_a_staged_target_and_tolerates_a_missing_one(tmp_path: Path) -> None:
    final = FileTarget(tmp_path / "a.txt")
    staged = final.temporary()
    staged.write_text("x")
    staged.discard()
    staged.discard()
    assert list(tmp_path.iterdir()) == []


def test_commit_of_a_missing_staged_file_is_a_target_error(tmp_path: Path) -> None:
    final = FileTarget(tmp_path / "a.txt")
    with pytest.raises(TargetError, match=r"could not move .*\.a\.tmp-.*\.txt into place as .*a\.txt"):
        final.temporary().commit_to(final)


def test_a_staged_target_stays_staged_through_pickling(tmp_path: Path) -> None:
    """Staged targets travel to worker processes; there they must still write directly."""
    staged = pickle.loads(pickle.dumps(FileTarget(tmp_path / "a.txt").temporary()))
    plain = pickle.loads(pickle.dumps(FileTarget(tmp_path / "b.txt")))
    with staged.open("w") as f:
        f.write("s")
        f.flush()
        assert staged.exists()
    with plain.open("w") as f:
        f.write("p")
        f.flush()
        assert not plain.exists()  # still atomic
    assert plain.read_text() == "p"


# -- remote URLs through fsspec ------------------------------------------------------------------
def test_a_target_only_one_process_can_see_is_refused_by_check_shared(tmp_path: Path) -> None:
    """A task writes its target in a worker process; memory:// would keep nothing for the run."""
    with pytest.raises(
        TargetError, match=r"target memory://b/a\.txt: memory:// lives in one process's memory"
    ):
        FileTarget("memory://b/a.txt").check_shared()
    FileTarget(tmp_path / "a.txt").check_shared()
    FileTarget("file:///tmp/a.txt").check_shared()
    FileTarget("nosuchprotocol://b/a.txt").check_shared()  # unknown: opening it says so, in the task


def test_a_remote_target_writes_reads_and_exists(bucket: str) -> None:
    t = FileTarget(f"{bucket}/day=2026-11-01/part.csv")
    assert not t.exists()
    t.write_text("id\n1\n")
    assert t.exists()
    assert t.read_text() == "id\n1\n"
    with t.open("rb") as f:
        assert f.read() == b"id\n1\n"
    assert _memory_ls(f"{bucket}/day=2026-11-01") == ["part.csv"]  # no temp left behind


def test_an_exception_inside_a_remote_write_leaves_nothing(bucket: str) -> None:
    t = FileTarget(f"{bucket}/a.txt")
    t.write_text("old")
    with pytest.raises(RuntimeError), t.open("w") as f:
        f.write("new")
        raise RuntimeError("boom")
    assert t.read_text() == "old"
    assert _memory_ls(bucket) == ["a.txt"]


def test_a_remote_staged_target_commits_and_removes(bucket: str) -> None:
    final = FileTarget(f"{bucket}/model.bin")
    staged = final.temporary()
    assert staged.url.startswith(f"{bucket}/.model.tmp-")
    staged.write_bytes(b"weights")
    assert not final.exists()
    staged.commit_to(final)
    assert final.read_bytes() == b"weights"
    assert not staged.exists()
    final.remove()
    assert not final.exists()


# -- shapes of a task's output -------------------------------------------------------------------
def test_flatten_and_rebuild_keep_the_declared_shape() -> None:
    a, b, c = FileTarget("a"), FileTarget("b"), FileTarget("c")
    shaped = {"csv": a, "more": [b, c]}
    assert flatten(shaped) == [a, b, c]
    assert flatten(a) == [a]
    assert flatten(None) == []
    assert flatten(42) == []
    x, y, z = FileTarget("x"), FileTarget("y"), FileTarget("z")
    assert rebuild(shaped, [x, y, z]) == {"csv": x, "more": [y, z]}
    assert rebuild((a, b), [x, y]) == (x, y)
    assert rebuild(a, [z]) == z
