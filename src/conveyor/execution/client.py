"""The runner's side of the execution API: ``ApiRecorder``, a ``Recorder`` that writes through
the server with its attempt's token instead of to the store, for runners on other machines.

    rec = ApiRecorder(ticket.api, ticket.token)
    begun = rec.begin(job)          # False: stale, do not start; a Holder: wait for it
    ...run_attempt(job, ...)...
    rec.end(job, outcome)

It is ``Recorder`` with the store's five calls (``AttemptApi``) going over HTTP: the waiting,
the patience and the heartbeat thread are the same. A server that does not answer (or answers
502/503/504) is retried with backoff for ``patience`` seconds; a 409 (the attempt is no longer
current) or a refused token ends the attempt quietly as stale. The attempt's log, which the
runner writes to ``job.log_path`` on this machine, is sent in chunks with each heartbeat and
in full before the end, to the log file that `conveyor logs -f` follows.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from conveyor.errors import ConveyorError
from conveyor.execution import CHUNK
from conveyor.recorder import Recorder
from conveyor.store.records import STALE, AttemptStatus, Holder

if TYPE_CHECKING:
    from conveyor.runner import Job, Outcome

#: The Unix socket to reach the API through, when set (see ``AttemptApi``).
SOCKET_ENV = "CONVEYOR_EXECUTION_SOCKET"
#: Answers that mean "try again": the server (or its store, or a proxy before it) is away.
RETRY = frozenset({429, 502, 503, 504})


class ApiUnavailable(ConveyorError):
    """The execution API did not answer, or answered that it cannot now (retried)."""


class Refused(Exception):
    """The API refused the request for good (401, 403, 409): the attempt is stale."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _say(line: str) -> None:
    print(f"runner: {line}", file=sys.__stderr__, flush=True)


class AttemptApi:
    """The store's calls a runner makes, for one attempt, over the execution API. The token it
    holds is the start token until ``begin`` answers, then the run token each heartbeat renews."""

    def __init__(self, api: str, token: str, timeout: float = 10.0) -> None:
        self.api = api.rstrip("/")
        self.token = token
        self.base = ""
        self.begun = False  # ``begin`` was answered: the token is a run token
        # A container without network reaches the API through a Unix socket its executor mounts
        # (``conveyor.executors.relay``): the URL still names the server, the socket is the way.
        sock = os.environ.get(SOCKET_ENV)
        transport = httpx.HTTPTransport(uds=sock) if sock else None
        self._http = httpx.Client(timeout=timeout, trust_env=False, transport=transport)

    def attach(self, run_id: str, instance: str, attempt: int) -> None:
        ids = "/".join(quote(str(x), safe="") for x in (run_id, instance, attempt))
        self.base = f"{self.api}/execution/v1/attempts/{ids}"

    def call(self, method: str, what: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(
                method, f"{self.base}/{what}", headers={"Authorization": f"Bearer {self.token}"}, **kwargs
            )
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"the execution API at {self.api} does not answer: {exc}") from None
        if r.status_code in RETRY:
            raise ApiUnavailable(f"the execution API at {self.api} answered {r.status_code}: {_detail(r)}")
        if r.status_code in (401, 403, 404, 409, 413, 422):
            raise Refused(r.status_code, _detail(r))
        if r.status_code >= 400:
            raise ApiUnavailable(f"the execution API at {self.api} answered {r.status_code}: {_detail(r)}")
        return r.json()

    # -- the store's calls, as ``Recorder`` makes them ---------------------------------------
    def begin_attempt(
        self, run_id: str, instance_id: str, number: int, owner: str, now: float, *,
        take_from: tuple[str, int] | None = None,
    ) -> Holder | str | None:  # fmt: skip
        try:
            got = self.call("POST", "begin", json={"owner": owner, "take_from": take_from})
        except Refused as exc:
            _say(f"the attempt may not start: {exc}")
            return STALE
        self.token, self.begun = got["token"], True
        return None if got["execute"] else Holder(**got["holder"])

    def waiting_on(self, instance_id: str, holder: Holder) -> tuple[Holder | None, AttemptStatus | None]:
        body = {f: getattr(holder, f) for f in ("run_id", "attempt", "owner", "expires", "state", "result")}
        try:
            got = self.call("POST", "waiting", json={"holder": body})
        except Refused:
            return None, None  # the runner then tries to begin again, and hears it is stale
        shift = time.time() - float(got["now"])  # the claim's expiry on this machine's clock
        claim = got["claim"]
        if claim is not None:
            claim = Holder(**{**claim, "expires": float(claim["expires"]) + shift})
        status = got["status"]
        if status is not None:
            status = AttemptStatus(instance_id, holder.attempt, status["state"], 0.0, None,
                                   status["error"], status["result"])  # fmt: skip
        return claim, status

    def beat_attempt(self, run_id: str, instance_id: str, number: int, now: float) -> bool:
        try:
            self.token = self.call("POST", "heartbeat")["token"]
        except Refused:
            return False
        return True

    def record_attempt(
        self, run_id: str, instance_id: str, number: int, state: str, *, ended_at: float,
        result: str | None = None, error: str | None = None, waited_for: str | None = None,
        outputs: str | None = None,
    ) -> bool:  # fmt: skip
        body = {"status": state, "ended_at": ended_at, "result": result, "error": error,
                "waited_for": waited_for, "outputs": outputs}  # fmt: skip
        try:
            self.call("POST", "end", json=body)
        except Refused as exc:
            _say(f"the attempt's end was refused: {exc}")
            return False
        return True

    def send_log(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` of the attempt's log; the bytes the server now holds."""
        return int(self.call("PUT", "log", params={"offset": offset}, content=data)["size"])

    def close(self) -> None:
        self._http.close()


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json()["detail"])
    except Exception:
        return r.text[:200] or r.reason_phrase


class LogShipper:
    """Sends what the runner appended to its local log file since the last time."""

    def __init__(self, api: AttemptApi, path: str) -> None:
        self.api = api
        self.path = path
        self.sent = 0
        self.chunk = CHUNK  # smaller if the server's body limit is (413)
        self.refused = False
        self._lock = threading.Lock()

    def ship(self) -> None:
        """Send every byte written so far, in chunks; ``ApiUnavailable`` if the server is away."""
        with self._lock:
            for _ in range(10_000):  # bounded: a log growing faster than it is sent waits its turn
                if self.refused:
                    return
                try:
                    with open(self.path, "rb") as f:
                        f.seek(self.sent)
                        data = f.read(self.chunk)
                except FileNotFoundError:
                    return
                if not data:
                    return
                try:
                    held = self.api.send_log(self.sent, data)
                except Refused as exc:
                    if exc.status == 413 and self.chunk > 4096:
                        self.chunk //= 4  # a server with a smaller --max-body: smaller chunks
                        continue
                    _say(f"the attempt's log is refused: {exc}")
                    self.refused = True
                    return
                # the server holds ``held`` bytes: send from there (behind us if it lost some)
                self.sent = held if held < self.sent + len(data) else self.sent + len(data)


class ApiRecorder(Recorder):
    """A ``Recorder`` for a runner that holds no store URL: only the execution API's address
    (``api``) and its attempt's token (``token``). One per attempt: after its end it stops.
    Unlike a local runner's, an attempt whose start the API never answered (for ``patience``
    seconds) does not start: nothing it did could be recorded."""

    def __init__(self, api: str, token: str, interval: float = 1.0, patience: float = 120.0) -> None:
        super().__init__(api, interval, patience)
        self._api = AttemptApi(api, token)
        self._log: LogShipper | None = None
        self._stopped = threading.Event()
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    def _db(self) -> Any:
        return self._api

    @property
    def token(self) -> str:
        """The attempt's token now: the start token, then the run token heartbeats renew."""
        return self._api.token

    def begin(self, job: Job, take_from: tuple[str, int] | None = None) -> bool | Holder:
        """As ``Recorder.begin``; the attempt's log is read from ``job.log_path`` from now on."""
        if self._log is None:
            self._api.attach(job.run_id, job.instance, job.attempt)
            self._log = LogShipper(self._api, job.log_path)
        got = super().begin(job, take_from)
        if got is True and not self._api.begun:  # never answered: nothing could be recorded
            _say(
                f"the execution API at {self._api.api} did not answer for {self.patience:.0f}s: not starting"
            )
            self.current, got = None, False
        if got is False:
            self._stopped.set()
        return got

    def end(self, job: Job, out: Outcome) -> None:
        """Send the rest of the log, then record the end (retried for ``patience`` seconds)."""
        self._stopped.set()
        if self._log is not None:
            self._retrying("sending the attempt's log", lambda _api: self._ship())
        super().end(job, out)
        self._api.close()

    def _ship(self) -> bool:
        assert self._log is not None
        self._log.ship()
        return True

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            key = self.current
            if key is None:
                continue
            try:
                if self._log is not None:
                    self._log.ship()
                self._api.beat_attempt(*key, time.time())
            except ConveyorError:
                pass  # the API is away: the end retries; a missed beat is harmless
