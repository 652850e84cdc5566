"""What a file target does differently on an object store (``s3://``, ``gs://``, any non-local
fsspec URL).

An object store has no rename, so nothing is written under the final name until the task has
returned: the task writes a *local* staging copy (``stage``), and ``upload`` sends it to the
final key in one request, or as a multipart upload that the store makes visible only when it is
completed. A directory is uploaded file by file, then its ``_SUCCESS`` object: a remote prefix
counts as written only when ``_SUCCESS`` is there (``done``). Deciding which of many targets
exist lists each folder once (``listing``). Errors from s3fs, gcsfs, botocore or aiohttp become
one-line ``TargetError``s naming the target, with credentials hidden (``reaching``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor.errors import TargetError

#: The object whose presence makes a remote prefix (a directory target) count as written.
SUCCESS = "_SUCCESS"

#: The extra that installs each store's fsspec implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}

#: Local staging directories are named ``conveyor-staging-<pid>-<random>`` under $TMPDIR.
STAGING = "conveyor-staging-"

#: botocore's retries unless the user configured them: a refused or unknown endpoint fails in
#: seconds, not after botocore's and s3fs's retries multiplied (ten seconds and more).
S3_CONFIG = {"connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}}


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0]


def hide(text: str) -> str:
    """``text`` without credentials: passwords in URLs and the secrets in the environment."""
    text = re.sub(r"//([^/@:\s]*):[^/@\s]*@", r"//\1:***@", text)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS_JSON"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def check(url: str) -> None:
    """Raise unless every process of a run can use ``url``: its fsspec implementation must be
    installed, and it must not live in one process's memory."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    protocol = protocol_of(url)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError:
        return  # a protocol fsspec does not know: opening it says so, where the task runs
    except ImportError:
        raise TargetError(f"target {hide(url)}: {missing(protocol)}") from None
    if issubclass(cls, MemoryFileSystem):
        raise TargetError(
            f"target {hide(url)}: {protocol}:// lives in one process's memory, and each task runs "
            "in a worker process of its own, so nothing written there is kept; use a local path "
            "or a shared store (s3://, gs://, ...)"
        )


def missing(protocol: str) -> str:
    """What to install for ``protocol``'s fsspec implementation."""
    from fsspec.registry import known_implementations

    known = known_implementations.get(protocol, {})
    package = str(known.get("class", protocol)).split(".")[0]
    extra = EXTRAS.get(protocol)
    how = f"pip install 'conveyor[{extra}]'" if extra else f"pip install {package}"
    return f"{protocol}:// needs the {package} package; {how}"


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path in it."""
    import fsspec

    protocol = protocol_of(url)
    try:
        fs, path = fsspec.core.url_to_fs(url, **_options(protocol))
    except ImportError:
        raise TargetError(f"target {hide(url)}: {missing(protocol)}") from None
    return fs, str(path).rstrip("/")


def _options(protocol: str) -> dict[str, Any]:
    if protocol not in ("s3", "s3a"):
        return {}
    import fsspec.config

    configured = fsspec.config.conf.get(protocol, {})
    if "config_kwargs" in configured or {"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} & set(os.environ):
        return {}
    return {"config_kwargs": S3_CONFIG}


@contextmanager
def reaching(url: str, doing: str = "") -> Iterator[None]:
    """Turn a store's error into one line naming the target (or ``doing`` and the URL) and its
    bucket, secrets hidden."""
    try:
        yield
    except TargetError:
        raise
    except Exception as exc:
        raise failed(url, exc, doing) from None


def failed(url: str, exc: BaseException, doing: str = "") -> TargetError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    where = f"{protocol_of(url)}://{bucket}"
    name = type(exc).__name__
    prefix = f"{doing} {url}" if doing else f"target {url}"
    if isinstance(exc, FileNotFoundError) and "bucket" in text.lower():
        msg = f"{prefix}: the bucket {where} does not exist; create it, or fix the target's URL"
    elif isinstance(exc, PermissionError) or name in ("NoCredentialsError", "PartialCredentialsError"):
        msg = (
            f"{prefix}: access to {where} was refused ({text}); check the credentials "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS)"
        )
    elif _unreachable(exc):
        msg = (
            f"{prefix}: cannot reach {where} ({text}); check the endpoint (AWS_ENDPOINT_URL) and the network"
        )
    else:
        msg = f"{prefix}: {name}: {text}"
    return TargetError(hide(msg))


def _unreachable(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(
        names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError"}
    ) or isinstance(exc, ConnectionError | TimeoutError)


# -- deciding which exist ---------------------------------------------------------------------------
def done(fs: Any, path: str) -> bool:
    """Whether the object ``path`` exists, or the prefix ``path`` with its ``_SUCCESS``."""
    return bool(fs.isfile(path) or fs.isfile(f"{path}/{SUCCESS}"))


def listing(fs: Any, folder: str) -> set[str]:
    """Every object under ``folder``, in one (paginated) listing: the store's answer now, not
    a listing cached earlier in this process."""
    fs.invalidate_cache(folder)
    return set(fs.find(folder))


def written(path: str, keys: set[str]) -> bool:
    return path in keys or f"{path}/{SUCCESS}" in keys


# -- staging and uploading ----------------------------------------------------------------------------
def staging(name: str) -> str:
    """A local path named ``name`` (its suffix kept: ``savefig`` needs it) in a new staging
    directory; the directories that processes which died (a SIGKILL) left behind are removed."""
    _sweep()
    root = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-")
    return os.path.join(root, name or "output")


def drop(local: str) -> None:
    """Remove the staging directory of ``local``."""
    root = os.path.dirname(local)
    if os.path.basename(root).startswith(STAGING):
        shutil.rmtree(root, ignore_errors=True)


def _sweep() -> None:
    tmp = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(STAGING)]
    except OSError:
        return
    for n in names:
        pid = n.removeprefix(STAGING).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(tmp, n), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def upload(local: str, fs: Any, path: str) -> None:
    """Send the staged ``local`` file or directory to ``path``: a file in one PUT, or one
    multipart upload that becomes visible only when completed; a directory file by file, with
    its ``_SUCCESS`` last (removed first when replacing one, so it never counts as done while
    it changes)."""
    _tidy(fs, path)
    if not os.path.isdir(local):
        fs.put_file(local, path)
        return
    root = Path(local)
    marker = f"{path}/{SUCCESS}"
    if fs.isfile(marker):
        fs.rm_file(marker)
    fs.invalidate_cache(path)
    old = set(fs.find(path))
    new = set()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"{path}/{f.relative_to(root).as_posix()}"
        if key != marker:
            fs.put_file(str(f), key)
            new.add(key)
    stale = sorted(old - new - {marker})
    if stale:
        fs.rm(stale)
    own = root / SUCCESS
    if own.is_file():
        fs.put_file(str(own), marker)
    else:
        fs.pipe_file(marker, b"")


def _tidy(fs: Any, path: str) -> None:
    """Abort the multipart uploads of ``path`` that an attempt killed mid-upload left behind
    (invisible, but S3 keeps and bills their parts). Only one attempt of a task instance runs
    at a time, so none of them is still wanted."""
    call = getattr(fs, "call_s3", None)
    if call is None or not hasattr(fs, "split_path"):
        return
    try:
        bucket, key, _ = fs.split_path(path)
        found = call("list_multipart_uploads", Bucket=bucket, Prefix=key)
        for u in found.get("Uploads", []):
            if u["Key"] == key or u["Key"].startswith(f"{key}/"):
                call("abort_multipart_upload", Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    except Exception:
        pass  # tidying is a courtesy: the upload itself says what is wrong
