"""The local transport: the service over the local store, which starts a scheduler in the
background when submitted work needs one and none runs. What it changes is audited as
``local:<os user>``, and the runs it triggers record that as their creator."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor import project as projects
from conveyor.errors import ConveyorError, LoadError
from conveyor.service import Service
from conveyor.store import open_store
from conveyor.views import BackfillView, RunView, ScheduleView


class Background:
    """The scheduler the local client starts: ``python -m conveyor scheduler --until-idle``, which
    exits once nothing is left to claim.

    It runs in a session of its own (a notebook's interrupt does not reach it), writes to
    ``log``, and outlives the client; a thread reaps it when it exits. If work was submitted
    after it started, it may have looked for work before that and exited: it is started once
    more. If it failed (it could not open the store or load the project), the next ``ensure``
    raises with the last line of its log, once."""

    def __init__(self, url: str, root: Path | None, log: Path) -> None:
        self.url, self.root, self.log = url, root, log
        self.process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._wanted = 0.0
        self._failed: int | None = None  # the exit code of ours that failed, not yet reported
        self._lock = threading.Lock()

    def ensure(self, running: Callable[[], bool], *, submitted: bool) -> None:
        """Start the scheduler unless ours is alive or ``running()`` (another one is)."""
        with self._lock:
            if submitted:
                self._wanted = time.monotonic()
            if self._failed is not None:
                code, self._failed = self._failed, None
                raise ConveyorError(
                    f"the scheduler started in the background exited with code {code}: "
                    f"{_last_line(self.log)}; see {self.log}"
                )
            if self.process is not None and self.process.poll() is None:
                return
            if running():
                return
            self._start(say=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        from conveyor.store.connection import safe_url

        cmd = [sys.executable, "-m", "conveyor", "scheduler", "--until-idle"]
        env = dict(os.environ)
        if safe_url(self.url) == self.url:
            cmd += ["--db", self.url]
        else:  # a password: not on a command line that ps shows
            env["CONVEYOR_DB"] = self.url
        if self.root is not None:
            cmd += ["--project", str(self.root)]
        return cmd, env

    def _start(self, *, say: bool) -> None:
        cmd, env = self.command()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.root or os.getcwd(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process, self._started = proc, time.monotonic()
        if say:
            print(
                f"conveyor: started a scheduler in the background (pid {proc.pid}); its log: {self.log}",
                file=sys.stderr,
            )
        threading.Thread(
            target=self._reap, args=(proc,), name=f"conveyor-reap-{proc.pid}", daemon=True
        ).start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if self.process is not proc:
                return
            if code > 0:
                self._failed = code
            elif self._wanted >= self._started:
                self._start(say=False)


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


class Local(Service):
    """``Service`` over the local store, with the transport's ``kick`` and ``close``."""

    def __init__(self, url: str, project: projects.Project | None, home: Path) -> None:
        super().__init__(open_store(url), project, targets=True)
        self.home = home
        self.background = Background(url, None if project is None else project.root, home / "scheduler.log")

    # -- changes, each audited as local:<os user>, as the server audits its callers' -----------------
    @functools.cached_property
    def actor(self) -> str:
        from conveyor.auth.people import local_actor

        return local_actor()

    def _audit(self, action: str, target: str, team: str | None) -> None:
        self.store.record_audit(self.actor, action, team=team, target=target, now=time.time())

    def trigger(
        self, name: str, params: Mapping[str, Any], *, from_text: bool = True, created_by: str | None = None
    ) -> RunView:
        run = super().trigger(name, params, from_text=from_text, created_by=created_by or self.actor)
        self._audit("trigger", run.id, run.team)
        return run

    def cancel(self, run_id: str) -> RunView:
        run = super().cancel(run_id)
        self._audit("cancel_run", run.id, run.team)
        return run

    def retry(self, run_id: str) -> RunView:
        run = super().retry(run_id)
        self._audit("retry_run", run.id, run.team)
        return run

    def backfill(self, pipeline: str, *args: Any, **kwargs: Any) -> BackfillView:
        made = super().backfill(pipeline, *args, **kwargs)
        self._audit("create_backfill", made.id, self._team())
        return made

    def cancel_backfill(self, backfill_id: str) -> BackfillView:
        done = super().cancel_backfill(backfill_id)
        self._audit("cancel_backfill", done.id, self._team())
        return done

    def pause(self, pipeline: str, paused: bool = True) -> ScheduleView:
        view = super().pause(pipeline, paused)
        self._audit("pause_schedule" if paused else "resume_schedule", pipeline, self._team())
        return view

    def _team(self) -> str | None:
        return None if self.project is None else self.project.team

    def kick(self, *, submitted: bool = False, backfill: str | None = None) -> None:
        if backfill is not None:
            self.step_backfill(backfill)
        self.background.ensure(
            lambda: any(s.state == "running" for s in self.schedulers()), submitted=submitted
        )

    def close(self) -> None:
        self.store.close()


def open_local(db: str | None, project: str | Path | None) -> Local:
    """The project (``project``: its directory or its ``conveyor.toml``; default: found here or
    above) and the store: ``db``, else ``$CONVEYOR_DB``, else ``conveyor.db`` in
    ``$CONVEYOR_HOME``, else in the project's ``.conveyor`` (without a project: here)."""
    if project is None:
        found = projects.find()
    else:
        path = Path(project)
        toml = path if path.name == projects.FILE else path / projects.FILE
        if not toml.is_file():
            raise LoadError(f"no {projects.FILE} in {path}; give the directory of your project")
        found = projects.read(toml)
    env_home = os.environ.get("CONVEYOR_HOME")
    home = Path(env_home).absolute() if env_home else (found.root if found else Path.cwd()) / ".conveyor"
    url = db or os.environ.get("CONVEYOR_DB") or f"sqlite:///{home / 'conveyor.db'}"
    return Local(url, found, home)
