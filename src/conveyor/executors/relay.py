"""A Unix socket that forwards to a TCP address: how a container with no network reaches the API.

A container started with ``--network none`` has only its own loopback, so the execution API this
process serves on the host's loopback is out of its reach. ``Relay(host, port)`` listens on a
Unix socket in a private folder; the executor bind-mounts that folder into each container and
the runner's client connects through it (``CONVEYOR_EXECUTION_SOCKET``). The container gets one
door, to the API and nowhere else, and the bytes pass unchanged (TLS to a remote server stays
end to end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading

SOCKET = "api.sock"
_CHUNK = 65536


class Relay:
    """Forward each connection to ``folder/api.sock`` to ``host:port`` until ``close()``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.folder = tempfile.mkdtemp(prefix="conveyor-api-")
        self.path = os.path.join(self.folder, SOCKET)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        os.chmod(self.path, 0o666)  # a container's root may be another user on the host (user namespaces)
        self._server.listen(64)
        self._closed = False
        self.used = False  # someone connected: the runner behind it has begun
        threading.Thread(target=self._accept, name="conveyor-api-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inner, _ = self._server.accept()
            except OSError:
                return
            self.used = True
            threading.Thread(target=self._connect, args=(inner,), daemon=True).start()

    def _connect(self, inner: socket.socket) -> None:
        try:
            outer = socket.create_connection(self.target, timeout=10)
        except OSError:
            inner.close()
            return
        outer.settimeout(None)
        back = threading.Thread(target=_pump, args=(outer, inner), daemon=True)
        back.start()
        _pump(inner, outer)
        back.join()
        inner.close()
        outer.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s writing side (the other pump closes)."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
