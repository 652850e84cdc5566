"""``conveyor server``: the REST API on uvicorn, and a scheduler it runs and watches.

    conveyor server --port 8080 --db sqlite:///.conveyor/conveyor.db --project .

The scheduler runs in a child process (``conveyor scheduler``), not in the server: the local
executor forks its workers, and forking a process that runs uvicorn's threads is unsafe. The
server starts the child, starts it again (with backoff) whenever it dies, sends it SIGHUP when the
pipelines are reloaded, and SIGTERM when the server stops, so that it hands its partition back.
The child has a process group of its own: a Ctrl-C in the terminal reaches only the server, which
stops the child once.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from conveyor import ids
from conveyor import project as projects
from conveyor.api import MAX_BODY, create_app
from conveyor.errors import CannotListen, LoadError
from conveyor.git import Clerk, Repository, project_name
from conveyor.git import home as git_home
from conveyor.service import Service
from conveyor.store import Store, default_url, open_store
from conveyor.store.connection import absolute_url, safe_url

log = logging.getLogger("conveyor.server")

#: Seconds the scheduler child gets to hand its partition back when the server stops.
STOP_GRACE = 20.0

#: Seconds open connections (a followed log) get to finish when the server stops.
SHUTDOWN_GRACE = 3


@dataclass(frozen=True, slots=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 8080
    db: str | None = None  # default: $CONVEYOR_DB, else .conveyor/conveyor.db
    project: Path | None = None  # where to look for conveyor.toml (default: here, or above)
    workers: int | None = None  # the scheduler's worker processes (default: one per CPU)
    scheduler: bool = True  # run a scheduler child
    max_body: int = MAX_BODY
    public_metrics: bool = False  # /metrics answers without a token


# -- listening ----------------------------------------------------------------------------------
def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or ``CannotListen`` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CannotListen(f"--host {host}: not an address this machine has ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"port {port} on {host} is in use; stop what uses it, or pick another with --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise CannotListen(f"port {port} on {host}: permission denied; use a port above 1023") from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def is_loopback(host: str) -> bool:
    """Does ``host`` name only this machine (127.0.0.1, ::1, localhost)?"""
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# -- the scheduler child ------------------------------------------------------------------------
class SchedulerProcess:
    """A ``conveyor scheduler`` child: started, restarted with backoff when it dies, stopped with
    SIGTERM. Its stdout and stderr are the server's."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        cwd: Path | None = None,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        steady_after: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.steady_after = steady_after  # a child that ran this long restarts after first_delay
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="conveyor-scheduler-watch", daemon=True)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        self._thread.start()

    def reload(self) -> None:
        """Ask the scheduler to load its project's pipelines again (SIGHUP)."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGHUP)
                log.info("scheduler (pid %d): asked to reload its pipelines", proc.pid)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM: the scheduler hands its partition back and exits; after ``grace`` seconds it
        is killed. Returns its exit code."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            log.info("stopping the scheduler (pid %d)", proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("the scheduler (pid %d) did not stop within %.0fs; killing it", proc.pid, grace)
                proc.kill()
                proc.wait()
            except KeyboardInterrupt:  # Ctrl-C again while it hands over: do not leave it behind
                proc.kill()
                proc.wait()
                raise
        self._thread.join(5)
        return proc.returncode

    def _watch(self) -> None:
        delay = self.first_delay
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    # a process group of its own: the terminal's Ctrl-C is for the server alone
                    self._proc = proc = subprocess.Popen(
                        self.argv, env=self.env, cwd=self.cwd, process_group=0
                    )
                except OSError as exc:
                    log.error("cannot start the scheduler: %s", exc)
                    proc = None
            if proc is not None:
                self.starts += 1
                log.info("scheduler started (pid %d)", proc.pid)
                began = time.monotonic()
                code = proc.wait()
                if self._stopping.is_set():
                    return
                if time.monotonic() - began >= self.steady_after:
                    delay = self.first_delay
                log.warning(
                    "the scheduler (pid %d) exited with code %d; starting it again in %.1fs",
                    proc.pid,
                    code,
                    delay,
                )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_delay)


def scheduler_command(root: Path | None, workers: int | None) -> list[str]:
    argv = [sys.executable, "-m", "conveyor", "scheduler"]
    if root is not None:
        argv += ["--project", str(root)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return argv


# -- the server -----------------------------------------------------------------------------------
class ShortPaths(logging.Filter):
    """uvicorn's access log lines with their paths cut to ``PATH_SHOWN`` characters: a request
    for a run id of 70,000 characters is logged in one short line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], ids.shown(args[2], PATH_SHOWN), *args[3:])
        return True


#: The characters of a request's path (and query) an access log line shows.
PATH_SHOWN = 120


class _Uvicorn(uvicorn.Server):
    """uvicorn, with the server's own signal handling: SIGINT, SIGTERM and SIGHUP stop it
    gracefully (a second Ctrl-C at once), and are not raised again once it has stopped (uvicorn
    would, and the scheduler child would be left running)."""

    def __init__(self, config: uvicorn.Config, urls: list[str]) -> None:
        super().__init__(config)
        self.urls = urls

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            ui, api, docs = self.urls
            log.info("Conveyor UI: %s   API: %s   docs: %s", ui, api, docs)


def serve(options: Options) -> None:
    """Serve the API (and run the scheduler child) until SIGINT, SIGTERM or SIGHUP. Refuses to
    listen beyond loopback while the store has no user (nobody could be asked to sign in)."""
    if not is_loopback(options.host):
        refuse_open(options)
    sock = listen(options.host, options.port)
    try:
        _serve(options, sock)
    finally:
        sock.close()


def refuse_open(options: Options) -> None:
    """``CannotListen`` when the store has no user: auth would be off on a public address."""
    store = open_store(absolute_url(options.db or default_url()))
    try:
        users = store.count_users()
    finally:
        store.close()
    if users == 0:
        raise CannotListen(
            f"--host {options.host} is not loopback and the store has no user, so anyone could run "
            "pipelines; create an admin first: conveyor users add NAME --admin; then conveyor tokens "
            "create NAME"
        )


def _serve(options: Options, sock: socket.socket) -> None:
    base = url_of(sock, options.host)
    found = _project(options.project)
    store = open_store(absolute_url(options.db or default_url()))
    try:
        service = Service(store, found, where=(options.project or Path.cwd()).resolve())
        log.info("store: %s", safe_url(store.url))
        if found is None:
            where = (options.project or Path.cwd()).resolve()
            log.warning(
                "no %s in %s or above: no pipelines are served (create one listing your pipelines, "
                "or give its directory with --project)",
                projects.FILE,
                where,
            )
        else:
            names = ", ".join(p.name for p in service.pipelines()) or "none"
            log.info("project %s: pipelines %s", found.root, names)
        child = _child(options, store, found) if options.scheduler else None
        if child is None:
            log.info("no scheduler (--no-scheduler): runs wait for a conveyor scheduler on this store")
        app = create_app(
            service,
            max_body=options.max_body,
            on_reload=child.reload if child else None,
            listen=options.host,
            public_metrics=options.public_metrics,
        )
        if store.count_users():
            log.info("sign-in required: every request but /healthz needs a token (conveyor tokens create)")
        else:
            log.info("no user in the store: nobody is asked to sign in (conveyor users add NAME --admin)")
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, ShortPaths) for f in access.filters):
            access.addFilter(ShortPaths())
        config = uvicorn.Config(
            app,
            host=options.host,
            port=sock.getsockname()[1],
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            server_header=False,
        )
        server = _Uvicorn(config, [f"{base}/", f"{base}/api/v1", f"{base}/docs"])
        clerk = _clerk(service, store, base)
        if child is not None:
            child.start()
        try:
            server.run(sockets=[sock])
        finally:
            if child is not None:
                child.stop()
            if clerk is not None:
                clerk.stop()
    finally:
        store.close()
    log.info("server stopped")


def _project(start: Path | None) -> projects.Project | None:
    if start is not None and not start.is_dir():
        raise LoadError(f"--project {start}: no such directory")
    return projects.find(start)


def _child(options: Options, store: Store, found: projects.Project | None) -> SchedulerProcess:
    """The scheduler child's command; the store's URL goes in its environment, not in its
    arguments, where ``ps`` would show a password."""
    env = dict(os.environ)
    env["CONVEYOR_DB"] = store.url
    # without a project, it runs where the server looked for one, and finds none either
    where = found.root if found else (options.project or Path.cwd()).resolve()
    return SchedulerProcess(scheduler_command(found.root if found else None, options.workers), env, cwd=where)


def _clerk(service: Service, store: Store, base: str) -> Clerk | None:
    """The thread that commits the results of runs a git push started (``conveyor.git``)."""
    name = project_name(service)
    if name is None:
        return None
    clerk = Clerk(Repository(git_home(), name), store, base)
    clerk.start()
    log.info("git remote: %s/git/%s.git", base, name)
    return clerk
