"""A real S3-compatible server for tests: moto's server on a free loopback port, in this process.

s3fs, here and in the ``conveyor`` commands the tests start (they inherit the environment), finds
it through the standard AWS variables, which the fixture sets for the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

#: The secret key the tests use: no message may ever show it.
SECRET = "s3cr3t-never-printed"


def serve() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield endpoint
    server.stop()


def store() -> Any:
    """A fresh s3fs client (no listing cached by an earlier one)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def new_bucket() -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    store().mkdir(name)
    return name


def keys(bucket: str) -> list[str]:
    """Every object in the bucket, by key."""
    return sorted(k.removeprefix(f"{bucket}/") for k in store().find(bucket))
