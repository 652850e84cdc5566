"""Which executor runs a task, and with which settings.

A task's own ``executor=`` wins, then its pipeline's, then the project's default. The default and
each executor's settings come from, in order (later wins)::

    # conveyor.toml
    [executor]
    default = "dask"              # local unless said
    [executor.dask]
    address = "tcp://10.0.0.5:8786"

then ``CONVEYOR_EXECUTOR`` and ``CONVEYOR_<NAME>_<SETTING>`` variables (``CONVEYOR_DASK_ADDRESS``),
then the flags ``--executor NAME`` and ``--executor-address ADDRESS``.

Runners on an engine report through the execution API (they never hold the store's
credentials): ``[executor] api = "http://conveyor.example:8080"`` (or
``CONVEYOR_EXECUTION_API``) names a ``conveyor server`` on the same store, whose results outlive
the process that launched the attempt; without one, that process serves the API itself, on
loopback (engines on this machine only). ``[executor] storage = "s3://bucket/conveyor"`` (or
``CONVEYOR_EXECUTION_STORAGE``) is where they save tasks' results, readable by the engine and by
Conveyor (default: ``.conveyor/artifacts``, which only engines on this machine reach).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ExecutorError


@dataclass(frozen=True, slots=True)
class Choice:
    default: str = "local"
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    api: str | None = None  # the execution API runners on engines report to (None: serve one here)
    storage: str | None = None  # where runners on engines save results (an fsspec URL; None: home)

    def of(self, name: str) -> dict[str, Any]:
        """The settings of executor ``name``."""
        return dict(self.settings.get(name, {}))


def choose(
    flag: str | None = None,
    *,
    address: str | None = None,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Choice:
    """The executor choice from conveyor.toml (found from ``root`` or the current directory),
    the environment and the flags."""
    env = os.environ if environ is None else environ
    default, settings, api, storage = _from_file(root)
    default = env.get("CONVEYOR_EXECUTOR") or default
    api = env.get("CONVEYOR_EXECUTION_API") or api
    storage = env.get("CONVEYOR_EXECUTION_STORAGE") or storage
    default = flag or default
    names = {default, *settings}
    prefixes = {f"CONVEYOR_{n.upper().replace('-', '_')}_": n for n in names if n != "local"}
    for key, value in env.items():
        for prefix, name in prefixes.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                settings.setdefault(name, {})[key[len(prefix) :].lower()] = value
    if address:
        if default == "local":
            raise ExecutorError("--executor-address needs --executor NAME; local workers have no address")
        settings.setdefault(default, {})["address"] = address
    return Choice(default, settings, api, storage)


def _from_file(root: Path | None) -> tuple[str, dict[str, dict[str, Any]], str | None, str | None]:
    from conveyor.project import FILE

    here = (root or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / FILE
        if path.is_file():
            break
    else:
        return "local", {}, None, None
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return "local", {}, None, None  # reported where the project is read
    section = data.get("executor", {})
    if not isinstance(section, dict):
        raise ExecutorError(f'{path}: [executor] must be a table, like [executor] default = "dask"')
    default = section.get("default", "local")
    if not isinstance(default, str):
        raise ExecutorError(f"{path}: [executor] default must be an executor's name, got {default!r}")
    api = section.get("api")
    if api is not None and not (isinstance(api, str) and api.startswith(("http://", "https://"))):
        raise ExecutorError(f'{path}: [executor] api must be a server\'s URL, like "http://host:8080"')
    storage = section.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise ExecutorError(
            f'{path}: [executor] storage must be a folder or URL, like "s3://bucket/conveyor"'
        )
    settings = {k: dict(v) for k, v in section.items() if isinstance(v, dict)}
    return default, settings, api, storage
