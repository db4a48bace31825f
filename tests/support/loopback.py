"""The one shape of every in-process loopback server: bind, one daemon thread, close.

    class Mine(LoopbackServer):
        def _bind(self) -> int: ...            # listen; return the bound port
        def _serve(self) -> None: ...          # the thread's loop, until _unbind() ends it
        def _unbind(self) -> None: ...         # stop the loop, close every socket

``start()`` (idempotent) and ``close()`` (idempotent, joins the thread) or ``with``;
``.port``, ``.host`` ("127.0.0.1:PORT") and ``.url`` while started. The HTTP servers
(support.faults.LoopbackHTTPServer) and the raw TCP ones (LoopbackTCPServer) are the
two families; a server restarted with ``port=`` comes back on the same port.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType
from typing import Self

__all__ = ["LoopbackServer", "LoopbackTCPServer"]


class LoopbackServer:
    def __init__(self, *, port: int = 0, address: str = "127.0.0.1") -> None:
        self.address = address
        self._bind_port = port  # 0: a free one; a fixed one to come back on a port after close()
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> int:
        raise NotImplementedError

    def _serve(self) -> None:
        raise NotImplementedError

    def _unbind(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        if self._port is not None:
            return self
        self._port = self._bind()
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}:{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._port is None:
            return
        self._unbind()
        thread, self._thread, self._port = self._thread, None, None
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


class LoopbackTCPServer(LoopbackServer):
    """Raw TCP: accepts connections and hands each to ``_accepted`` (on the accept thread);
    on close every accepted connection is closed too. ``_stop`` is set while closing."""

    def __init__(self, *, port: int = 0, address: str = "127.0.0.1") -> None:
        super().__init__(port=port, address=address)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def _accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _keep(self, conn: socket.socket) -> None:
        """Close ``conn`` with the server (a TLS-wrapped one, say)."""
        with self._lock:
            self._conns.append(conn)

    def _bind(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.address, self._bind_port))
        sock.listen(64)
        self._sock = sock
        self._stop.clear()
        port: int = sock.getsockname()[1]
        return port

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if not readable:
                continue
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self._keep(conn)
            self._accepted(conn)

    def _unbind(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
