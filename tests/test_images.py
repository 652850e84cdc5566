"""Images per project and commit, built for real with podman from a base made on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from containers import PODMAN, RUN_FLAGS, base_image, git_project, need_podman
from conveyor import images

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PIPELINE = """
from conveyor import pipeline, task

@task
def hello() -> str:
    return "hello"

@pipeline
def greet():
    hello()
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One project under git, built once for the module: (its folder, its commit, the id printed)."""
    need_podman()
    root = tmp_path_factory.mktemp("images") / "shop"
    toml = f'[project]\npipelines = ["flows.py"]\n\n[image]\nbase = "{base_image()}"\n'
    toml += 'requirements = ["croniter"]\n'
    commit = git_project(root, {"conveyor.toml": toml, "flows.py": PIPELINE})
    done = cli(root, "image", "build", "--no-cache")  # built even if an earlier test run built it
    assert done.returncode == 0, done.stderr
    return root, commit, done.stdout.strip()


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_the_image_is_tagged_with_project_and_commit_and_holds_the_code(built: tuple[Path, str, str]) -> None:
    root, commit, printed = built
    assert printed.startswith("sha256:")
    shown = cli(root, "image", "show")
    assert shown.stdout.split() == [f"localhost/conveyor-shop:{commit}", printed]
    ran = subprocess.run(
        [*PODMAN, "run", "--rm", *RUN_FLAGS, "--network", "none", printed, "python3", "-c",
         "import conveyor, croniter, pathlib; print(pathlib.Path('flows.py').read_text().count('@task'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.stdout.strip() == "1", ran.stderr  # conveyor and the requirement installed, code in /project


def test_the_same_inputs_give_the_same_image_id(built: tuple[Path, str, str]) -> None:
    root, _, printed = built
    again = images.build(root, cache=False)  # every step run again, not taken from the cache
    assert again.id == printed


def test_a_changed_working_copy_gets_a_dirty_tag_of_its_own(built: tuple[Path, str, str]) -> None:
    root, commit, _ = built
    (root / "flows.py").write_text(PIPELINE + "\n# changed\n")
    try:
        first = images.tag(root)
        assert first.startswith(f"localhost/conveyor-shop:{commit}-dirty-")
        (root / "flows.py").write_text(PIPELINE + "\n# changed again\n")
        assert images.tag(root) != first
        assert "not built" in cli(root, "image", "show").stdout
    finally:
        (root / "flows.py").write_text(PIPELINE)
    assert images.tag(root) == f"localhost/conveyor-shop:{commit}"


def test_a_failing_build_is_one_line_with_the_log_tail(tmp_path: Path) -> None:
    need_podman()
    recipe = f'FROM {base_image()}\nRUN ["python3", "-c", "raise SystemExit(\'no such package: pandaz\')"]\n'
    git_project(tmp_path / "broken", {"Containerfile": recipe, "conveyor.toml": "[project]\n"})
    done = cli(tmp_path / "broken", "image", "build")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]  # after the build's own output, streamed
    assert last.startswith("Error: building image localhost/conveyor-broken:"), done.stderr
    assert "no such package: pandaz" in last
    assert "Traceback" not in done.stderr


def test_no_recipe_says_how_to_write_one(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("[project]\n")
    done = cli(tmp_path, "image", "build")
    assert done.returncode == 2 and "[image] base" in done.stderr and "Traceback" not in done.stderr


def test_missing_podman_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('[image]\nbase = "python:3.11-slim"\n')
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "image", "build"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert "apt-get install podman buildah runc" in done.stderr and "Traceback" not in done.stderr
