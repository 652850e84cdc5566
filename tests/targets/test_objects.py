"""Object-store targets against a real local S3 (moto's server on 127.0.0.1): an object appears
only when its task succeeded, a killed upload leaves nothing under the final name, one listing
decides a folder's targets, and a missing package, store or bucket is one line and exit 2."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Project
from conveyor.errors import TargetError
from conveyor.targets import DIRECT, FileTarget, done_among, objects
from s3 import SECRET, keys, new_bucket, store


@pytest.fixture
def bucket(s3: str) -> str:
    return new_bucket()


def pending_uploads(bucket: str) -> list[str]:
    fs = store()
    return [u["Key"] for u in fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])]


def effects(project: Project) -> list[str]:
    path = project.root / "effects.log"
    return path.read_text().split() if path.exists() else []


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr + proc.stdout
    return lines[0]


# -- the runner's part, in this process -----------------------------------------------------------
def test_a_staged_object_is_a_local_path_uploaded_with_its_content_hash(bucket: str) -> None:
    final = FileTarget(f"s3://{bucket}/charts/plot.png")
    staged = final.stage()
    assert staged.is_local and staged.path.endswith("plot.png")  # savefig wants a path and a suffix
    Path(staged.path).write_bytes(b"\x89PNG pixels")
    assert not final.exists()
    written = final.finish(staged, DIRECT)
    assert written == {
        "kind": "file",
        "target": f"s3://{bucket}/charts/plot.png",
        "size": 11,
        "sha256": hashlib.sha256(b"\x89PNG pixels").hexdigest(),
    }
    assert final.read_bytes() == b"\x89PNG pixels"
    assert not os.path.exists(staged.path)  # the local staging is gone


def test_a_directory_counts_as_written_only_with_its_success_object(bucket: str) -> None:
    final = FileTarget(f"s3://{bucket}/parts/day=1")
    staged = final.stage()
    os.makedirs(staged.path)
    for name in ("a.csv", "sub/b.csv"):
        Path(staged.path, name).parent.mkdir(parents=True, exist_ok=True)
        Path(staged.path, name).write_text(name)
    written = final.finish(staged, DIRECT)
    assert written is not None and written["kind"] == "directory" and written["size"] == 14
    assert keys(bucket) == ["parts/day=1/_SUCCESS", "parts/day=1/a.csv", "parts/day=1/sub/b.csv"]
    assert final.exists()
    fs = store()
    fs.rm_file(f"{bucket}/parts/day=1/_SUCCESS")  # the files alone: not done
    assert not FileTarget(f"s3://{bucket}/parts/day=1").exists()
    assert done_among([FileTarget(f"s3://{bucket}/parts/day=1")]) == set()


def test_a_failed_write_leaves_nothing_remote_or_local(bucket: str) -> None:
    final = FileTarget(f"s3://{bucket}/a.txt")
    with pytest.raises(RuntimeError), final.open("w") as f:
        f.write("half")
        raise RuntimeError("boom")
    staged = final.stage()
    Path(staged.path).write_text("half")
    final.abandon(staged)
    assert keys(bucket) == []
    assert not os.path.exists(os.path.dirname(staged.path))


# -- deciding which exist -----------------------------------------------------------------------
def test_one_listing_decides_every_target_in_a_folder(bucket: str) -> None:
    fs, _ = objects.filesystem(f"s3://{bucket}/daily")
    for i in range(0, 30, 2):
        fs.pipe_file(f"{bucket}/daily/{i}.csv", b"x")
    for i in range(30, 40, 2):
        fs.pipe_file(f"{bucket}/daily/{i}/part-0.parquet", b"x")
        fs.pipe_file(f"{bucket}/daily/{i}/_SUCCESS", b"")
    fs.pipe_file(f"{bucket}/daily/41/part-0.parquet", b"x")  # no _SUCCESS: being written
    targets = [FileTarget(f"s3://{bucket}/daily/{i}.csv") for i in range(30)]
    targets += [FileTarget(f"s3://{bucket}/daily/{i}") for i in range(30, 42)]
    requests: list[str] = []
    fs.s3.meta.events.register("before-call.s3", lambda model, **_: requests.append(model.name))
    done = done_among(targets)
    expected = {f"{i}.csv" for i in range(0, 30, 2)} | {str(i) for i in range(30, 40, 2)}
    assert {t.url.rpartition("/")[2] for t in done} == expected
    assert requests == ["ListObjectsV2"]  # 42 targets, one request


# -- real runs of the CLI -----------------------------------------------------------------------
PIPELINE = """
    import os, time
    from conveyor import task, pipeline, output

    def effect(name):
        with open("effects.log", "a") as f:
            f.write(name + "\\n")

    @task(output="s3://{bucket}/reports/{{day}}.csv")
    def report(day: int) -> None:
        with output().open("w") as f:
            f.write(f"day,{{day}}\\n")
        effect(f"report-{{day}}")
        if os.path.exists("slow"):  # the test looks at the bucket, then says go
            open("written", "w").close()
            deadline = time.time() + 60
            while not os.path.exists("go") and time.time() < deadline:
                time.sleep(0.05)

    @task(output="s3://{bucket}/parts/day={{day}}")
    def parts(day: int) -> None:
        os.makedirs(output().path)
        for n in range(3):
            with open(os.path.join(output().path, f"part-{{n}}.csv"), "w") as f:
                f.write(f"{{day}},{{n}}\\n")
        effect(f"parts-{{day}}")

    @pipeline
    def daily(days: int = 2):
        for day in range(days):
            parts(day, after=[report(day)])
"""


@pytest.fixture
def daily(project: Project, bucket: str) -> tuple[Project, str]:
    project.write("daily.py", PIPELINE.format(bucket=bucket))
    return project, bucket


PARTS = ("part-0.csv", "part-1.csv", "part-2.csv")


@pytest.mark.slow
def test_a_run_writes_objects_and_the_next_run_skips_them(daily: tuple[Project, str]) -> None:
    project, bucket = daily
    project.cli("run", "daily.py:daily", check=True)
    assert keys(bucket) == [
        *(f"parts/day={d}/{n}" for d in range(2) for n in ("_SUCCESS", *PARTS)),
        "reports/0.csv",
        "reports/1.csv",
    ]
    assert FileTarget(f"s3://{bucket}/reports/1.csv").read_text() == "day,1\n"
    assert sorted(effects(project)) == ["parts-0", "parts-1", "report-0", "report-1"]
    project.cli("run", "daily.py:daily", "--new", check=True)
    project.cli("run", "daily.py:daily", "-p", "days=3", check=True)
    assert sorted(effects(project)) == ["parts-0", "parts-1", "parts-2", "report-0", "report-1", "report-2"]


@pytest.mark.slow
def test_an_object_is_absent_until_its_task_returned(daily: tuple[Project, str]) -> None:
    project, bucket = daily
    (project.root / "slow").touch()
    proc = project.popen("run", "daily.py:daily", "-p", "days=1")
    deadline = time.time() + 60
    while not (project.root / "written").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    assert keys(bucket) == []  # written and closed, but the task has not returned
    (project.root / "go").touch()
    assert proc.wait(timeout=60) == 0, proc.communicate()
    assert "reports/0.csv" in keys(bucket)


BIG = """
    import time
    from conveyor import task, pipeline, output

    @task(output="s3://{bucket}/big.bin")
    def big() -> None:
        with output().open("wb") as f:
            for _ in range({mib}):
                f.write(b"conveyor" * 131072)  # a MiB
        open("written", "w").close()

    @pipeline
    def upload():
        big()
"""
MIB = 110  # s3fs uploads a file of twice its 50 MiB part size or more as a multipart upload


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_run_killed_mid_upload_leaves_no_object_and_the_next_run_completes_it(
    project: Project, bucket: str
) -> None:
    project.write("upload.py", BIG.format(bucket=bucket, mib=MIB))
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "upload.py:upload"],
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    try:
        deadline = time.time() + 120
        while "big.bin" not in pending_uploads(bucket):  # parts are on their way
            assert proc.poll() is None, "the run ended before the upload could be interrupted"
            assert time.time() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert (project.root / "written").exists()
    assert "big.bin" not in keys(bucket)  # the parts are invisible: nothing under the final name
    assert not FileTarget(f"s3://{bucket}/big.bin").exists()

    project.cli("run", "upload.py:upload", check=True, timeout=180)
    fs = store()
    expected = hashlib.sha256(b"conveyor" * 131072 * MIB).hexdigest()
    with fs.open(f"{bucket}/big.bin", "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == expected
    assert pending_uploads(bucket) == []  # the killed attempt's parts were aborted, not billed on


# -- one-line errors ------------------------------------------------------------------------------
def pipeline_to(project: Project, url: str) -> None:
    project.write(
        "remote.py",
        f"""
        from conveyor import task, pipeline, output

        @task(output="{url}")
        def write() -> None:
            output().write_text("x")

        @pipeline
        def remote():
            write()
        """,
    )


def test_memory_targets_are_refused_with_one_line(project: Project) -> None:
    pipeline_to(project, "memory://scratch/a.txt")
    line = one_line_error(project.cli("run", "remote.py:remote"))
    assert "target memory://scratch/a.txt: memory:// lives in one process's memory" in line


@pytest.mark.slow
def test_a_missing_s3fs_is_one_line_naming_the_extra(project: Project, tmp_path: Path) -> None:
    hide = tmp_path / "no-s3fs"
    hide.mkdir()
    (hide / "s3fs.py").write_text("raise ImportError('No module named s3fs')\n")
    pipeline_to(project, "s3://bucket/a.txt")
    env = {**project.env(), "PYTHONPATH": str(hide)}
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "remote.py:remote"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = one_line_error(proc)
    assert "target s3://bucket/a.txt: s3:// needs the s3fs package; pip install 'conveyor[s3]'" in line


def test_the_missing_package_of_other_stores_is_named() -> None:
    assert objects.missing("gs") == "gs:// needs the gcsfs package; pip install 'conveyor[gcs]'"
    assert objects.missing("abfs") == "abfs:// needs the adlfs package; pip install adlfs"


@pytest.mark.slow
def test_an_unreachable_store_is_one_line_naming_the_bucket_quickly(project: Project, s3: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    pipeline_to(project, "s3://far-away/reports/a.txt")
    env = {**project.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "remote.py:remote"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.time() - started
    line = one_line_error(proc)
    assert "cannot reach s3://far-away" in line and "s3://far-away/reports" in line
    assert took < 15, f"an unreachable store took {took:.1f}s to report"


@pytest.mark.slow
def test_a_missing_bucket_is_one_line(project: Project, s3: str) -> None:
    pipeline_to(project, "s3://no-such-bucket/a.txt")
    line = one_line_error(project.cli("run", "remote.py:remote"))
    assert "the bucket s3://no-such-bucket does not exist; create it" in line


def test_credentials_are_hidden_from_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    err = objects.failed("s3://b/k", ConnectionError(f"http://me:pw@host/ said {SECRET}"))
    assert isinstance(err, TargetError)
    assert "pw" not in str(err) and SECRET not in str(err)
    assert FileTarget("ftp://me:pw@host/a.txt").describe() == "ftp://me:***@host/a.txt"
