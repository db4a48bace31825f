"""HTTP transports, and the translation of transport failures into SPEC §2 reasons.

The default is the ``httpx-aiohttp`` transport: httpx's own async pool (httpcore)
collapses under concurrency on small machines (see README "Performance").
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator

import httpx

from monitor.domain import Reason

__all__ = [
    "TransportFactory",
    "default_transport_factory",
    "describe_failure",
    "failure_reason",
    "httpx_transport",
]

TransportFactory = Callable[[ssl.SSLContext | bool], httpx.AsyncBaseTransport]

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=30)


def default_transport_factory(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    return _MappedAiohttp(AiohttpTransport(verify=verify, limits=_LIMITS))


class _MappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_aiohttp():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _map_aiohttp():
            await self._inner.aclose()


class _MappedAiohttp(httpx.AsyncBaseTransport):
    """httpx-aiohttp lets some aiohttp errors through unmapped (a malformed status
    line or header raises ``aiohttp.ClientResponseError``); map every one to httpx's."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _map_aiohttp():
            response = await self._inner.handle_async_request(request)
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover
            return response
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_MappedStream(stream),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.contextmanager
def _map_aiohttp() -> Iterator[None]:
    import aiohttp

    try:
        yield
    except (aiohttp.ClientResponseError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        raise httpx.RemoteProtocolError(f"malformed HTTP answer: {type(exc).__name__}") from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(f"{type(exc).__name__}") from exc


def httpx_transport(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    """httpx's own pool (httpcore); kept for measurement and as a fallback."""
    return httpx.AsyncHTTPTransport(verify=verify, limits=_LIMITS)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_reason(exc: BaseException) -> Reason:
    """Which SPEC §2 reason a transport exception means, whatever the transport."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain) or any(
        "SSL" in n or "Certificate" in n for n in names
    ):
        return Reason.TLS
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return Reason.UNREACHABLE
    if "ServerDisconnectedError" in names or "ClientOSError" in names:
        return Reason.UNREACHABLE
    if any(isinstance(e, httpx.TimeoutException | TimeoutError) for e in chain) or any(
        "Timeout" in n for n in names
    ):
        return Reason.TIMEOUT
    if any(isinstance(e, httpx.RemoteProtocolError | httpx.DecodingError) for e in chain):
        return Reason.PROTOCOL
    return Reason.UNREACHABLE


_DESCRIPTIONS = {
    Reason.TLS: "TLS handshake failed",
    Reason.UNREACHABLE: "cannot connect",
    Reason.TIMEOUT: "timed out",
    Reason.PROTOCOL: "malformed HTTP answer",
}


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free description: 'cannot connect (connection refused)'."""
    reason = failure_reason(exc)
    chain = _chain(exc)
    cause = ""
    for e in reversed(chain):
        if isinstance(e, ConnectionRefusedError):
            cause = "connection refused"
            break
        if isinstance(e, ssl.SSLError):
            cause = (getattr(e, "reason", None) or "").lower().replace("_", " ")
            break
        if isinstance(e, OSError) and e.strerror:
            cause = e.strerror.lower()
            break
    text = _DESCRIPTIONS.get(reason, str(reason))
    return f"{text} ({cause})" if cause else text
