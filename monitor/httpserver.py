"""The HTTP server regmon runs: uvicorn's h11 protocol with bounds a hostile client cannot pass.

uvicorn alone bounds none of these: it starts no timer until a first response
is complete, the keep-alive timer is cancelled by every byte received, and
``limit_concurrency`` is checked only once a request head has been parsed.
So a client that sends a header byte every few seconds holds its connection
(and a file descriptor) forever, and 1,100 of them exhaust a 1,024-fd process.

* ``raise_fd_limit()``: the soft RLIMIT_NOFILE is raised to the hard limit.
* At most ``max_connections`` (the fd limit less a reserve for registry,
  webhook and database sockets) are open; a connection over the cap closes
  the connection that has been idle longest (no request in progress), or
  itself when every connection is busy. A fresh client that sends its request
  at once is therefore served even while slow ones fill the cap. accept()
  itself refuses past a hard limit inside the reserve: asyncio accepts a whole
  backlog before the first of those connections is counted.
* A connection must deliver a complete request head within ``HEAD_TIMEOUT``
  of opening or of its previous response, or it is closed.
* The event loop's ``socket.accept() out of system resource`` report (asyncio
  repeats it for every queued connection, thousands a second) is logged at
  most once per ``LOG_EVERY`` seconds with a count of the ones not shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import time
from collections.abc import Mapping
from typing import Any, Final

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "ConnectionGuard",
    "Throttle",
    "connection_cap",
    "fd_limit",
    "install_accept_error_throttle",
    "make_server",
    "raise_fd_limit",
]

log = logging.getLogger("regmon.http")

HEAD_TIMEOUT: Final = 10.0  # seconds to send a whole request head
LOG_EVERY: Final = 60.0  # seconds between two reports of the same trouble
_FD_RESERVE_MIN: Final = 256  # descriptors kept for registry/webhook/database sockets and files
ACCEPTS_PER_ITERATION: Final = 32
MAX_CONNECTIONS: Final = 4096
_ACCEPT_ERROR: Final = "socket.accept() out of system resource"


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return fd_limit()


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(limit: int) -> int:
    """HTTP connections kept under an fd ``limit``: a quarter (at least 256) stays free.

    At most ``MAX_CONNECTIONS`` whatever the limit: each may buffer up to 16 KiB
    of an incomplete request head (h11's default), and probes, scrapes and the API
    never need thousands.
    """
    return min(max(limit - max(_FD_RESERVE_MIN, limit // 4), 16), MAX_CONNECTIONS)


class Throttle:
    """At most one report per ``every`` seconds; counts what it held back."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self._every = every
        self._last: float | None = None
        self.held = 0

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every:
            self.held += 1
            return False
        self._last = now
        return True

    def take_held(self) -> int:
        held, self.held = self.held, 0
        return held


class ConnectionGuard:
    """The limits shared by every connection of one server.

    ``max_connections`` open connections are kept: one more closes the longest
    idle. Descriptors are held from accept() to connection_lost, longer than
    a connection is counted as open, so accept() itself refuses (closes at once)
    past ``hard_limit``, a third of the reserve further up.
    """

    def __init__(
        self,
        max_connections: int,
        head_timeout: float = HEAD_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        self.hard_limit = max_connections + max(max_connections // 6, 8)
        self.head_timeout = head_timeout
        # accepted, connection_made not yet run (a transport that fails to set up in
        # between would stay counted: asyncio then logs it, and plain TCP does not fail so)
        self.pending = 0
        self.closing = 0  # closed by us, connection_lost not yet run
        self.connections: set[Any] = set()  # uvicorn's ServerState.connections
        self.by_age: dict[Any, None] = {}  # connections, longest idle first
        self.dropped = 0
        self.accepted_now = 0  # accepted in this event loop iteration
        self._report = Throttle()

    def next_iteration(self) -> None:
        self.accepted_now = 0

    @property
    def held(self) -> int:
        """Descriptors of HTTP connections: accepted and not yet released."""
        return self.pending + len(self.connections)

    def oldest_idle(self, besides: Any) -> Any | None:
        for conn in self.by_age:
            if conn is not besides and conn.idle and not conn.transport.is_closing():
                return conn
        return None

    def report(self, what: str) -> None:
        self.dropped += 1
        if self._report.due():
            held = self._report.take_held()
            more = f" ({held} more since the last report)" if held else ""
            log.warning(
                "HTTP: %s (limit %d open connections); %d connections closed so far%s",
                what,
                self.max_connections,
                self.dropped,
                more,
            )

    def wrap(self, sock: socket.socket) -> socket.socket:
        """The listening ``sock`` (detached) as one whose accept() honours ``hard_limit``."""
        return _GuardedSocket(self, sock)


class _GuardedSocket(socket.socket):
    def __init__(self, guard: ConnectionGuard, sock: socket.socket) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self._guard = guard

    def accept(self) -> tuple[socket.socket, Any]:
        # asyncio accepts up to its whole backlog (2,048) in one loop iteration
        # before the first connection_made runs and can close an idle one. A few
        # per iteration keeps the descriptors in flight few; BlockingIOError is
        # asyncio's "none left for now", and the socket stays readable for the next.
        guard = self._guard
        if guard.accepted_now >= ACCEPTS_PER_ITERATION:
            raise BlockingIOError(errno.EAGAIN, "accepting more in the next loop iteration")
        while True:
            conn, addr = super().accept()  # BlockingIOError once the queue is empty
            if guard.held < guard.hard_limit:
                break
            conn.close()
            guard.report("refused a connection, too many open")
        if guard.accepted_now == 0:
            asyncio.get_running_loop().call_soon(guard.next_iteration)
        guard.accepted_now += 1
        guard.pending += 1
        return conn, addr


def _protocol_class(guard: ConnectionGuard) -> type[H11Protocol]:
    class GuardedH11Protocol(H11Protocol):
        """h11 with a request-head deadline and the connection cap of ``guard``."""

        _deadline: asyncio.TimerHandle | None = None
        _dropped = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            guard.pending = max(guard.pending - 1, 0)
            super().connection_made(transport)
            guard.connections = self.connections
            self._arm()
            if len(self.connections) - guard.closing <= guard.max_connections:
                return
            victim = guard.oldest_idle(besides=self)
            if victim is not None:
                victim.drop()
                guard.report("closed the longest idle connection for a new one")
            else:
                self.drop()
                guard.report("refused a connection, every open one is busy")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.by_age.pop(self, None)
            if self._dropped:
                guard.closing -= 1
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        @property
        def idle(self) -> bool:
            """No request in progress: waiting for (the rest of) a request head."""
            return self.cycle is None or self.cycle.response_complete

        def drop(self) -> None:
            self._disarm()
            if self.transport.is_closing() or self._dropped:
                return
            self._dropped = True
            guard.closing += 1
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            guard.by_age.pop(self, None)
            guard.by_age[self] = None
            self._deadline = self.loop.call_later(guard.head_timeout, self._on_deadline)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def send_400_response(self, msg: str) -> None:
            # uvicorn's answer to a request h11 cannot parse, with the headers every
            # answer of the app carries (uvicorn adds no default headers to this one).
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"connection", b"close"),
                *guard.headers,
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=msg.encode("ascii")),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
            self.transport.close()

        def _on_deadline(self) -> None:
            self._deadline = None
            if self.idle:
                self.drop()

    return GuardedH11Protocol


def install_accept_error_throttle(loop: asyncio.AbstractEventLoop) -> None:
    """Log asyncio's accept() resource errors at most once per ``LOG_EVERY`` seconds."""
    throttle = Throttle()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_ERROR:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        if throttle.due():
            held = throttle.take_held()
            log.error(
                "HTTP: cannot accept connections: %s%s",
                context.get("exception") or "out of system resources",
                f" ({held} more since the last report)" if held else "",
            )

    loop.set_exception_handler(handler)


def make_server(
    app: Any,
    host: str,
    port: int,
    *,
    max_connections: int,
    head_timeout: float = HEAD_TIMEOUT,
    headers: Mapping[str, str] | None = None,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` with the bounds above; it leaves signals to the service.

    ``headers`` go on the answers uvicorn writes itself (400 for an unparsable request).
    """
    guard = ConnectionGuard(max_connections, head_timeout, headers)

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the service owns the signals
            yield

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            await super().serve([guard.wrap(sock) for sock in sockets or []] or None)

    return _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=_protocol_class(guard),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
        )
    )
