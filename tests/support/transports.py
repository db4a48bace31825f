"""The three ways a registry request can go, for tests that compare them.

* ``httpcore``: httpx's own pool.
* ``streams``: httpx on asyncio's streams and h11 (``regmon check`` with few references).
* ``aiohttp``: httpx over httpx-aiohttp, every request through httpx's model.
* ``lean``: the default transport as the service uses it: the same, but a steady-state
  manifest HEAD goes to aiohttp's session directly (``LeanHead``).

``aiohttp`` is the default transport seen only through ``handle_async_request``: with
no ``head`` the client has no lean path. ``LeanCounter`` is the default transport that
counts the HEADs that took the lean path, so a test can tell it was taken.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

from monitor.registry.streams import stream_transport
from monitor.registry.transport import (
    LeanAnswer,
    LeanHead,
    TransportFactory,
    default_transport_factory,
    httpx_transport,
)

__all__ = ["TRANSPORTS", "HttpxOnly", "LeanCounter", "httpx_over_aiohttp"]


class HttpxOnly(httpx.AsyncBaseTransport):
    """A transport as httpx sees it, and nothing else (no lean HEAD)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def httpx_over_aiohttp(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    return HttpxOnly(default_transport_factory(verify))


class _Counted(HttpxOnly):
    def __init__(self, inner: httpx.AsyncBaseTransport, counter: LeanCounter) -> None:
        super().__init__(inner)
        assert isinstance(inner, LeanHead)
        self._lean = inner
        self._counter = counter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._counter.via_httpx.append(request.method)
        return await super().handle_async_request(request)

    async def head(self, url: str, headers: Mapping[str, str], http_timeout: float) -> LeanAnswer:
        self._counter.heads.append(url)
        return await self._lean.head(url, headers, http_timeout)


class LeanCounter:
    """The default transport factory; ``heads`` lists the URL of every lean HEAD,
    ``via_httpx`` the method of every request httpx handed to the transport (a
    redirect's replayed first answer too)."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.via_httpx: list[str] = []

    def __call__(self, verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
        return _Counted(default_transport_factory(verify), self)


TRANSPORTS: dict[str, TransportFactory] = {
    "httpcore": httpx_transport,
    "streams": stream_transport,
    "aiohttp": httpx_over_aiohttp,
    "lean": default_transport_factory,
}
