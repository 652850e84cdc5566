"""The project's git remote over smart HTTP: ``git http-backend`` run per request.

    git remote add conveyor http://HOST:PORT/git/PROJECT.git
    git push conveyor main
    git pull conveyor results/main

Why ``git http-backend`` (Debian's git, a CGI) and not a Python implementation such as dulwich:
it is git itself, so every client feature (protocol v2, gzip bodies, shallow clones, pack
negotiation) and every hook works as with any git server, and it needs no new dependency; the
server only authenticates, sets the CGI environment and streams the bodies both ways.

This is ASGI middleware in front of the API: requests under ``/git/`` are answered here, before
the API's body limit (a push's pack may be far larger than an API request) and outside the
OpenAPI schema (git's protocol is not the REST API). Authentication is git's: HTTP basic with the
user's token as the password (any user name; git's credential helpers keep it), or a bearer
token. Who may do what is decided by ``conveyor.auth.roles.RULES`` (``git_fetch``: viewer,
``git_push``: member of the project's team); the pusher's role goes to the hooks
(``conveyor.git.hooks``), which refuse a member's change to the configuration.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.auth import tokens
from conveyor.auth.roles import RULES, Principal, Verdict, decide
from conveyor.git.repo import NAME, Repository
from conveyor.service import Service

if TYPE_CHECKING:
    from conveyor.api.access import Access

log = logging.getLogger("conveyor.git")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/git/"

#: What a 401 says; git prints it after "remote:" when it gives up.
SIGN_IN = (
    "sign in: git asks for a user name (any) and a password: your Conveyor token "
    "(conveyor tokens create); a credential helper keeps it"
)


def project_name(service: Service) -> str | None:
    """The name of the served project's repository: the project folder's name."""
    return None if service.project is None else service.project.root.name


def home() -> Path:
    """Where the repositories live: ``<server home>/git``."""
    from conveyor.store import home as conveyor_home

    return conveyor_home() / "git"


class GitRemote:
    """Answer ``/git/PROJECT.git/...``; pass every other request on to ``app``."""

    def __init__(self, app: ASGIApp, *, service: Service, access: Access, root: Path | None = None) -> None:
        self.app = app
        self.service = service
        self.access = access  # is auth on (a user exists)
        self.root = root  # where the repositories live (default: ``home()``)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        await self._serve(scope, receive, send)

    def repository(self) -> Repository | None:
        name = project_name(self.service)
        return None if name is None else Repository(self.root or home(), name)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope["path"])[len(PREFIX) :]
        repo_part, _, rest = path.partition("/")
        name = repo_part.removesuffix(".git")
        repo = self.repository()
        if repo is None:
            await _answer(
                send, 404, "this server serves no project (start it with --project), so no git remote"
            )
            return
        if name != repo.name or not NAME.match(name) or ".." in rest.split("/"):
            await _answer(
                send, 404, f"no git repository {repo_part!r} here; this server's is /git/{repo.name}.git"
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin and scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 403, "git pushes do not come from web pages; use a git client")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        pushing = rest == "git-receive-pack" or (rest == "info/refs" and "service=git-receive-pack" in query)
        op = "git_push" if pushing else "git_fetch"
        refused, who, role = await asyncio.to_thread(self._authorize, op, headers)
        if refused is not None:
            status, why = refused
            await _answer(send, status, why, basic=status == 401)
            return
        await asyncio.to_thread(repo.ensure)
        if rest.startswith("large/"):
            await _large(repo, rest[len("large/") :], send)
            return
        env = self._cgi(scope, headers, repo, rest, query, who, role)
        await _cgi(env, receive, send)
        if pushing and scope["method"] == "POST" and who is not None:
            team = self.service.project.team if self.service.project else None
            audit = self.service.store.record_audit
            await asyncio.to_thread(audit, who.user, op, team=team, target=repo.name, now=time.time())

    def _authorize(
        self, op: str, headers: dict[str, str]
    ) -> tuple[tuple[int, str] | None, Principal | None, str]:
        """(None, who, their role) when allowed; ((status, one line), None, "") when not."""
        if not self.access.on():
            return None, None, ""
        who = _principal(self.service, headers)
        team = self.service.project.team if self.service.project else None
        verdict, why = decide(RULES[op], who, team)
        if verdict is Verdict.SIGN_IN or who is None:
            return (401, SIGN_IN), None, ""
        if verdict in (Verdict.HIDDEN, Verdict.FORBIDDEN):
            return (403, why), None, ""
        role = who.role_in(team)
        return None, who, "admin" if who.admin else (role.label if role else "")

    def _cgi(
        self,
        scope: Scope,
        headers: dict[str, str],
        repo: Repository,
        rest: str,
        query: str,
        who: Principal | None,
        role: str,
    ) -> dict[str, str]:
        host = headers.get("host", "127.0.0.1")
        project = self.service.project
        env = {
            **os.environ,
            "GATEWAY_INTERFACE": "CGI/1.1",
            "GIT_PROJECT_ROOT": str(repo.home),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.name}.git/{rest}",
            "REQUEST_METHOD": str(scope["method"]),
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REMOTE_ADDR": str((scope.get("client") or ("127.0.0.1", 0))[0]),
            "REMOTE_USER": who.user if who else "anonymous",
            "CONVEYOR_DB": self.service.store.url,
            "CONVEYOR_GIT_HOME": str(repo.home),
            "CONVEYOR_GIT_NAME": repo.name,
            "CONVEYOR_GIT_USER": who.user if who else "",
            "CONVEYOR_GIT_ROLE": role,
            "CONVEYOR_GIT_TEAM": (project.team or "") if project else "",
            "CONVEYOR_GIT_URL": f"{scope.get('scheme', 'http')}://{host}",
        }
        for header, var in (
            ("content-type", "CONTENT_TYPE"),
            ("content-length", "CONTENT_LENGTH"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "GIT_PROTOCOL"),
            ("git-protocol", "HTTP_GIT_PROTOCOL"),
        ):
            if header in headers:
                env[var] = headers[header]
        return env


def _principal(service: Service, headers: dict[str, str]) -> Principal | None:
    """The user a request signs in: basic auth's password (git), or a bearer token."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    secret = None
    if scheme.lower() == "basic":
        try:
            secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    elif scheme.lower() == "bearer":
        secret = value.strip()
    if not secret:
        return None
    found = tokens.verify(service.store, secret, now=time.time())
    return None if found is None else found[0]


async def _answer(send: Send, status: int, line: str, *, basic: bool = False) -> None:
    body = (line + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if basic:
        headers.append((b"www-authenticate", b'Basic realm="Conveyor"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _large(repo: Repository, sha: str, send: Send) -> None:
    """A result file kept by hash (its pointer file in git names this URL)."""
    path = repo.large / sha
    if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha) or not path.is_file():
        await _answer(send, 404, f"no large result {sha[:70]!r} kept here")
        return
    size = path.stat().st_size
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(size).encode()),
            ],
        }
    )
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _cgi(env: dict[str, str], receive: Receive, send: Send) -> None:
    """Run ``git http-backend`` with ``env``; the request body streams to its stdin, its stdout
    (CGI headers, then the body) streams back as it comes: a push's ``remote:`` lines reach the
    client while the hooks run."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        await _answer(send, 503, "git is not installed on the server: install it (apt-get install git)")
        return
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    async def feed() -> None:
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                if message.get("body"):
                    stdin.write(message["body"])
                    await stdin.drain()
                if not message.get("more_body", False):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stdin.close()

    feeding = asyncio.create_task(feed())
    errors = asyncio.create_task(stderr.read())
    try:
        await _relay(stdout, send)  # a client gone mid-answer: uvicorn drops what follows, git finishes
    except BaseException:  # cancelled (the server stops): git is not left behind
        feeding.cancel()
        if proc.returncode is None:
            proc.kill()
        raise
    await feeding
    code = await proc.wait()
    said = (await errors).decode(errors="replace").strip()
    if code != 0 or said:
        log.warning("git http-backend %s exited %d: %s", env.get("PATH_INFO"), code, said[-500:])


async def _relay(stdout: asyncio.StreamReader, send: Send) -> None:
    """The CGI's answer as HTTP: its header lines (``Status:`` among them), then its body."""
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        chunk = await stdout.read(65536)
        if not chunk:
            break
        head += chunk
    sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
    raw, _, body = head.partition(sep)
    status, headers = 200, []
    for line in raw.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers.append((key.strip().lower().encode(), value.strip().encode("latin-1")))
    if not raw:
        status = 502
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if body:
        await send({"type": "http.response.body", "body": body, "more_body": True})
    while chunk := await stdout.read(65536):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


__all__ = ["GitRemote", "home", "project_name"]
