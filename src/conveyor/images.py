"""A project's image: its code, Conveyor and its requirements, built per commit.

Container engines run attempts in an image, so a project's code reaches them as an image, never
as a bind mount of someone's working copy. ``build(root)`` makes it with podman's builder (Debian's
``podman``/``buildah``: no Docker daemon) from the project's ``Containerfile`` or, without one,
from ``conveyor.toml``::

    [image]
    base = "python:3.11-slim"            # any image with python3 and pip
    requirements = ["pandas>=2.2"]       # pip requirements beyond Conveyor's own

The generated recipe installs Conveyor itself from a wheel of the checkout this process runs (so
the runner in the container is the code that launched it), then the requirements, then copies the
project's files to ``/project``. The build context holds only the files git knows (tracked or
untracked but not ignored), so a stray virtualenv never lands in the image.

The build is reproducible: ``--timestamp 0`` and no byte-code compiled at install, so the same
inputs give the same image id. The tag says which code: ``localhost/conveyor-<project>:<commit>``;
a working copy with changes gets ``<commit>-dirty-<hash of the changes>``, so two different
dirty states never share a tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ImageError

INSTALL = "apt-get install podman buildah runc"
PROJECT_DIR = "/project"  # where the project's files are in a generated image
_WHEEL_DIR = "/opt/conveyor"
_TAIL = 8  # lines of a failed build's log in its one-line error


@dataclass(frozen=True, slots=True)
class Recipe:
    """How a project's image is made."""

    root: Path
    name: str  # the project's name, as an image name: [a-z0-9._-]
    containerfile: Path | None  # the project's own; None: generated from ``base``
    base: str | None
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Image:
    tag: str
    id: str | None  # None: not built yet


def recipe(root: Path) -> Recipe:
    """The recipe of the project at ``root`` (its ``Containerfile``, else ``[image]`` in its
    ``conveyor.toml``)."""
    root = root.resolve()
    data: dict[str, object] = {}
    toml = root / "conveyor.toml"
    if toml.is_file():
        try:
            data = tomllib.loads(toml.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ImageError(f"{toml}: {exc}") from None
    section = data.get("image", {})
    project = data.get("project", {})
    if not isinstance(section, dict) or not isinstance(project, dict):
        raise ImageError(f"{toml}: [image] and [project] must be tables")
    raw_name = project.get("name") or root.name
    name = re.sub(r"[^a-z0-9._-]+", "-", str(raw_name).lower()).strip("-._") or "project"
    own = root / str(section.get("containerfile", "Containerfile"))
    base = section.get("base")
    requirements = section.get("requirements", [])
    if base is not None and not isinstance(base, str):
        raise ImageError(f'{toml}: [image] base must be an image reference, like base = "python:3.11-slim"')
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise ImageError(f'{toml}: [image] requirements must be a list of strings, like ["pandas>=2.2"]')
    if own.is_file():
        return Recipe(root, name, own, None, tuple(requirements))
    if base is None:
        raise ImageError(
            f"{root}: no Containerfile and no [image] base in conveyor.toml: add one, "
            'e.g. [image] base = "python:3.11-slim"'
        )
    return Recipe(root, name, None, base, tuple(requirements))


def tag(root: Path) -> str:
    """The tag the project's image has at its current code: ``localhost/conveyor-<name>:<version>``."""
    return f"localhost/conveyor-{recipe(root).name}:{_version(root.resolve())}"


def show(root: Path) -> Image:
    """The image a run of the project would use now, with its id if it is built."""
    wanted = tag(root)
    found = _podman(["image", "inspect", "--format", "{{.Id}}", wanted], check=False)
    return Image(wanted, full_id(found.stdout) if found.returncode == 0 else None)


def full_id(said: str) -> str | None:
    """An image id as podman prints it (with or without its ``sha256:``), in its full form."""
    said = said.strip()
    return (said if said.startswith("sha256:") else f"sha256:{said}") if said else None


def build(root: Path, *, progress: Callable[[str], None] | None = None, cache: bool = True) -> Image:
    """Build the project's image (streaming the build's output to ``progress``); its tag and id.
    The image of this code is not built twice unless ``cache`` is False. A failed build raises
    ``ImageError`` with the log's last lines.

    Every step runs at each build (``--layers=false``): podman's layer cache records the ids of
    the intermediate images it reused in the history, so the id would depend on what the cache
    held. Without it the same inputs give the same id."""
    made = recipe(root)
    _podman(["--version"])
    wanted = tag(root)
    if cache:
        found = show(root)
        if found.id is not None:  # this commit's image exists: built from the same inputs
            if progress is not None:
                progress(f"{wanted} is built already (--no-cache builds it again)")
            return found
    with tempfile.TemporaryDirectory(prefix="conveyor-image-") as scratch:
        context = Path(scratch) / "context"
        _copy_project(made.root, context / "project" if made.containerfile is None else context)
        if made.containerfile is None:
            wheel = _wheel(Path(scratch) / "wheel")
            (context / "conveyor").mkdir()
            shutil.copy2(wheel, context / "conveyor" / wheel.name)
            recipe_file = Path(scratch) / "Containerfile"
            recipe_file.write_text(containerfile(made, wheel.name))
        else:
            recipe_file = made.containerfile
        iid = Path(scratch) / "iid"
        args = ["build", "--timestamp", "0", "--cgroupns", "private", "--iidfile", str(iid), "-t", wanted,
                "-f", str(recipe_file), "--label", f"conveyor.io/project={made.name}"]  # fmt: skip
        args.append("--layers=false")  # no intermediate images: their ids would enter the history
        _stream([*args, str(context)], progress, what=f"image {wanted}")
        return Image(wanted, iid.read_text().strip())


def containerfile(made: Recipe, wheel: str) -> str:
    """The recipe generated from ``[image]``: exec-form steps only (the base needs no shell)."""
    install = ["python3", "-m", "pip", "install", "--no-cache-dir", "--no-compile",
               f"{_WHEEL_DIR}/{wheel}", *made.requirements]  # fmt: skip
    return "\n".join([
        f"FROM {made.base}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore",
        f"COPY conveyor/ {_WHEEL_DIR}/",
        f"RUN {json.dumps(install)}",
        f"COPY project/ {PROJECT_DIR}/",
        f"WORKDIR {PROJECT_DIR}",
        "",
    ])  # fmt: skip


def _version(root: Path) -> str:
    """The commit's short sha, ``-dirty-<hash>`` when the working copy differs from it; a hash of
    the files outside git."""
    head = _git(root, "rev-parse", "--short=12", "HEAD")
    if head is None:
        digest = hashlib.sha256()
        for path in _files(root):
            digest.update(path.encode() + b"\0" + (root / path).read_bytes())
        return f"nogit-{digest.hexdigest()[:12]}"
    changes = _git(root, "status", "--porcelain", "--untracked-files=all", "--", ".")
    if not changes:
        return head
    digest = hashlib.sha256((_git(root, "diff", "HEAD", "--binary", "--", ".") or "").encode())
    for line in changes.splitlines():
        if line.startswith("??"):
            path = line[3:]
            digest.update(path.encode() + b"\0" + (root / path).read_bytes())
    return f"{head}-dirty-{digest.hexdigest()[:12]}"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _files(root: Path) -> list[str]:
    """The project's files: what git tracks or would (not ignored); every file without git."""
    listed = _git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    if listed is not None:
        return sorted(p for p in listed.split("\0") if p and (root / p).is_file())
    found = (p.relative_to(root) for p in root.rglob("*") if p.is_file())  # no git: hidden files aside
    return sorted(
        str(p) for p in found if not any(part.startswith(".") or part == "__pycache__" for part in p.parts)
    )


def _copy_project(root: Path, into: Path) -> None:
    for path in _files(root):
        dest = into / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, dest)


def _wheel(into: Path) -> Path:
    """A wheel of the Conveyor this process runs, built from its checkout, with fixed timestamps."""
    import conveyor

    source = Path(conveyor.__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():
        raise ImageError(
            f"conveyor at {Path(conveyor.__file__).parent} is not a checkout: write a Containerfile "
            "that installs conveyor instead of [image] base"
        )
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    import importlib.util

    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
         "-w", str(into), str(source)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    wheels = sorted(into.glob("conveyor-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ImageError(f"building conveyor's wheel from {source} failed: {_last(done.stderr)}")
    return wheels[0]


def _last(text: str, lines: int = _TAIL) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _which() -> str:
    podman = shutil.which("podman")
    if podman is None:
        raise ImageError(f"podman is not installed: {INSTALL}")
    return podman


def _podman(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_which(), "--runtime", "runc", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ImageError(f"podman {args[0]} failed: {_last(done.stderr)}")
    return done


def _stream(args: list[str], progress: Callable[[str], None] | None, *, what: str) -> None:
    tail: deque[str] = deque(maxlen=_TAIL)
    with subprocess.Popen(
        [_which(), "--runtime", "runc", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if progress is not None:
                progress(line.rstrip("\n"))
    if proc.returncode != 0:
        raise ImageError(f"building {what} failed (exit {proc.returncode}): {_last(chr(10).join(tail))}")
