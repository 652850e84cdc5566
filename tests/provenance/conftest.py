"""One project in a temporary git repository for the record's end-to-end tests: the demo
(examples/sales) and a deliberately nondeterministic pipeline, each run once through the real
command and shared by the tests of this folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.recorded import Recorded

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sales"

NOISY = textwrap.dedent(
    """
    import os
    import random
    import time

    import conveyor
    from conveyor import output, pipeline, task

    EXTERNAL = "{external}"


    @task(output="noisy-output/steady.csv")
    def steady() -> None:
        conveyor.seed()  # the same draws on every re-run
        rows = [f"{n},{random.randint(0, 10**9)}" for n in range(5)]
        output().write_text("n,draw\\n" + "\\n".join(rows) + "\\n")


    @task(output="noisy-output/table.csv")
    def table() -> None:
        output().write_text(f"day,value\\n1,10\\n2,{time.time_ns()}\\n3,30\\n")


    @task(output="noisy-output/noise.png")
    def picture() -> None:
        from PIL import Image

        img = Image.new("RGB", (16, 16), "white")
        for byte in os.urandom(8):
            img.putpixel((byte % 16, byte // 16), (0, 0, 0))
        img.save(output().path)


    @task(output="noisy-output/copy.txt", inputs=EXTERNAL)
    def reader() -> None:
        with open(EXTERNAL) as f:  # data from outside the repository
            output().write_text(f.read())


    @pipeline
    def noisy() -> None:
        steady()
        table()
        picture()
        reader()
    """
)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=root, check=True
    )


@pytest.fixture(scope="package")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    base = tmp_path_factory.mktemp("record")
    root = base / "project"
    shutil.copytree(EXAMPLE, root / "sales")
    (base / "external.txt").write_text("first\n")
    (root / "noisy.py").write_text(NOISY.replace("{external}", str(base / "external.txt")))
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "the demo and a noisy pipeline")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(root / ".conveyor"), COLUMNS="200", TMPDIR=str(base))
    made = Recorded(root, env, "", "")
    ids = []
    for target, *params in (["sales/pipeline.py:daily_sales", "-p", "days=2"], ["noisy.py:noisy"]):
        done = made.cli("run", target, *params)
        assert done.returncode == 0, done.stdout + done.stderr
        found = re.search(r"Starting run (\S+)", done.stdout)
        assert found, done.stdout
        ids.append(found.group(1))
    made.demo, made.noisy = ids
    yield made
