"""A base image for container tests, made on this machine: no registry is reachable here.

``base_image()`` assembles a root file system from this machine's own Python (the interpreter
running the tests, at the same path, so its compiled-in prefix and library path hold), the
shared libraries its extension modules need, ``/bin/sh``, and Conveyor's dependencies (plus the
demo's) installed from the configured package index, then ``podman import``s it. The tag is
a hash of what went in (the interpreter, the dependency list, this file), so a second test run,
or CI on the same machine, reuses the image instead of rebuilding it (about a minute).

``need_podman()`` skips a test when podman is missing, with the command that installs it;
under CI=true it fails instead (podman can exist here, so CI must have it).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

INSTALL = "apt-get install podman buildah runc"
PODMAN = ["podman", "--runtime", "runc"]
RUN_FLAGS = ["--cgroupns=private", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
ROOT = Path(__file__).resolve().parents[1]
# What the image's Python needs beyond the standard library: Conveyor's own dependencies and the
# demo's, taken from pyproject.toml's text so the tag changes when they change.
_SKIP_STDLIB = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3")


def need_podman() -> None:
    """Skip (fail in CI) when podman, buildah or runc is missing."""
    missing = [tool for tool in ("podman", "buildah", "runc") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted([*project["dependencies"], *project["optional-dependencies"]["demo"]])


def base_tag() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(sys.base_prefix.encode())
    digest.update("\n".join(_requirements()).encode())
    for part in (_assemble, _copy_libraries, base_image):  # how it is made, not the helpers beside
        digest.update(inspect.getsource(part).encode())
    return f"localhost/conveyor-test-base:{digest.hexdigest()[:12]}"


def _exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def base_image() -> str:
    """The base image's tag, assembling and importing it the first time."""
    tag = base_tag()
    if _exists(tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="conveyor-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _assemble(rootfs)
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name)
        subprocess.run(
            [*PODMAN, "import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
             "--change", "WORKDIR /", str(archive), tag],
            check=True, capture_output=True,
        )  # fmt: skip
    return tag


def _assemble(rootfs: Path) -> None:
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = prefix / "lib" / version
    target = rootfs / prefix.relative_to("/")
    (target / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.base_exec_prefix) / "bin" / version, target / "bin" / version)
    (target / "lib").mkdir()
    for lib in (prefix / "lib").glob("libpython*.so*"):
        shutil.copy2(lib, target / "lib" / lib.name)
    shutil.copytree(
        stdlib, target / "lib" / version,
        ignore=lambda folder, names: [n for n in names if folder == str(stdlib) and n in _SKIP_STDLIB]
        + [n for n in names if n == "__pycache__"],
    )  # fmt: skip
    site = target / "lib" / version / "site-packages"
    site.mkdir()
    for name in ("bin", "usr/local/bin", "tmp", "etc", "lib64", "root", "work"):
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    for alias in ("python3", "python"):
        (rootfs / "usr/local/bin" / alias).symlink_to(prefix / "bin" / version)
    shutil.copy2("/bin/dash" if os.path.exists("/bin/dash") else "/bin/sh", rootfs / "bin/sh")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n")
    shutil.copy2("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ca-certificates.crt")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site),
         "pip", *_requirements()],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    shutil.rmtree(site / "bin", ignore_errors=True)
    _copy_libraries(rootfs)


def _copy_libraries(rootfs: Path) -> None:
    """Copy every shared library the image's binaries and extension modules load from the host."""
    objects = [p for p in rootfs.rglob("*") if p.is_file() and (".so" in p.name or p.parent.name == "bin")]
    seen: set[str] = set()
    pending = [str(p) for p in objects]
    while pending:
        chunk, pending = pending[:200], pending[200:]
        listing = subprocess.run(["ldd", *chunk], check=False, capture_output=True, text=True).stdout
        for line in listing.splitlines():
            parts = line.split()
            path = next((p for p in parts if p.startswith("/") and os.path.exists(p)), None)
            if path is None or path in seen or path.startswith(str(rootfs)):
                continue
            seen.add(path)
            real = os.path.realpath(path)
            if real.startswith(sys.base_prefix):
                continue  # libpython: already in place
            dest = rootfs / path.lstrip("/")
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, dest)
                pending.append(str(dest))


def git_project(root: Path, files: dict[str, str]) -> str:
    """A project folder under git with ``files`` committed; its short commit, the same for the
    same files (fixed dates), so its image is built once and found again by later test runs."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git = ["git", "-C", str(root), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    fixed = {
        **os.environ,
        "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
    }
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True, env=fixed)
    return subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def runner_image(scratch: Path) -> str:
    """An image with this checkout's Conveyor on the base (what the podman executor runs when
    the project's code comes from the mounted working folder); built once, then cached."""
    from conveyor import images

    root = scratch / "runner"
    git_project(root, {"conveyor.toml": f'[project]\nname = "runner"\n\n[image]\nbase = "{base_image()}"\n'})
    built = images.build(root)
    assert built.id is not None
    return built.id
