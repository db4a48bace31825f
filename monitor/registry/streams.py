"""An httpx transport on asyncio's streams and h11, for ``regmon check`` of a few
references: httpx's request and response model as ever, without httpcore's pool.

httpcore on asyncio needs anyio (its locks and network backend): importing the two
is ~160 M instructions, a quarter of a single check (bench/README.md, "One check").
This transport sends HTTP/1.1 over ``asyncio.open_connection`` with h11 (httpcore's
own parser) and keeps idle connections per origin; it raises the httpx exception
httpcore raises for the same fault, so ``classify_failure`` gives the same reason
and cause (tests/registry/test_registry_faults.py runs the fault table on it).
No HTTP/2, no proxies of its own: httpx mounts its own transports for proxies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import h11
import httpx

from monitor.registry.transport import ServerDisconnected

__all__ = ["StreamTransport", "stream_transport"]

_T = TypeVar("_T")
_READ_SIZE = 65536
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_Origin = tuple[bytes, bytes, int]


def stream_transport(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    """A ``TransportFactory``: ``verify`` as httpx takes it."""
    return StreamTransport(verify)


class StreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._idle: dict[_Origin, list[_Connection]] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            verify = self._verify
            context = (
                verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
            )
            context.set_alpn_protocols(["http/1.1"])  # as httpcore does without HTTP/2
            self._context = context
        return self._context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'."
            )
        origin = (scheme, url.raw_host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.reusable():
                try:
                    return await conn.exchange(request, timeouts)
                except ServerDisconnected:
                    pass  # closed while idle, before our request: ask on a new connection
            else:
                conn.close()
        conn = await self._connect(origin, timeouts)
        return await conn.exchange(request, timeouts)

    async def _connect(self, origin: _Origin, timeouts: dict[str, float | None]) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        tls = self._tls() if scheme == b"https" else None
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    name, port, ssl=tls, server_hostname=name if tls else None
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(reader, writer, lambda conn: self._release(origin, conn))

    def _release(self, origin: _Origin, conn: _Connection) -> None:
        self._idle.setdefault(origin, []).append(conn)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


class _Connection:
    """One HTTP/1.1 connection: one request at a time, back to the pool once its answer
    is read to the end."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        release: Callable[[_Connection], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._release = release
        self._h11 = h11.Connection(h11.CLIENT)

    def reusable(self) -> bool:
        return not (self._reader.at_eof() or self._writer.is_closing())

    def close(self) -> None:
        self._writer.close()

    async def exchange(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        try:
            await self._send(request, timeouts.get("write"))
            response = await self._event(timeouts.get("read"))
            while isinstance(response, h11.InformationalResponse):  # 1xx: as httpcore, next
                response = await self._event(timeouts.get("read"))
        except BaseException:
            self.close()
            raise
        if not isinstance(response, h11.Response):  # pragma: no cover - h11 gives no other
            self.close()
            raise httpx.RemoteProtocolError(f"unexpected {type(response).__name__}")
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            stream=_Body(self, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def _send(self, request: httpx.Request, limit: float | None) -> None:
        target = request.url.raw_path
        self._write(h11.Request(method=request.method, target=target, headers=request.headers.raw))
        if not isinstance(request.stream, httpx.AsyncByteStream):  # pragma: no cover
            raise httpx.LocalProtocolError("a synchronous request body")
        async for chunk in request.stream:
            self._write(h11.Data(data=chunk))
        self._write(h11.EndOfMessage())
        await self._io(self._writer.drain(), limit, httpx.WriteTimeout, httpx.WriteError)

    def _write(self, event: h11.Event) -> None:
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        if data:
            self._writer.write(data)

    async def _event(self, limit: float | None) -> h11.Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if isinstance(event, h11.Event):  # not NEED_DATA (PAUSED: only for a server)
                return event
            data = await self._io(
                self._reader.read(_READ_SIZE), limit, httpx.ReadTimeout, httpx.ReadError
            )
            if not data and self._h11.their_state is h11.SEND_RESPONSE:
                raise ServerDisconnected("Server disconnected without sending a response.")
            self._h11.receive_data(data)

    @staticmethod
    async def _io(
        step: Awaitable[_T],
        limit: float | None,
        on_timeout: type[httpx.TimeoutException],
        on_error: type[httpx.NetworkError],
    ) -> _T:
        try:
            async with asyncio.timeout(limit):
                return await step
        except TimeoutError as exc:
            raise on_timeout(str(exc) or "timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise on_error(str(exc)) from exc

    async def body(self, limit: float | None) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await self._event(limit)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
        except BaseException:
            self.close()
            raise
        self._done()

    def finish(self) -> None:
        """An answer closed unread: reusable if all of it is already here (a HEAD's, an
        empty body), else closed."""
        try:
            while isinstance(event := self._h11.next_event(), h11.Data):
                pass
        except h11.RemoteProtocolError:
            event = None
        if isinstance(event, h11.EndOfMessage):
            self._done()
        else:
            self.close()

    def _done(self) -> None:
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._release(self)
        else:
            self.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: _Connection, timeout: float | None) -> None:
        self._conn = conn
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.body(self._timeout):
            yield chunk
        self._done = True

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._conn.finish()
