"""HTTP transports, and the translation of transport failures into SPEC §2 reasons.

The default is the ``httpx-aiohttp`` transport: httpx's own async pool (httpcore)
collapses under concurrency on small machines (see README "Performance"). Each
transport is wrapped so that it raises the same httpx exception for the same
fault; ``classify_failure`` then decides by exception type and cause chain,
once, whichever transport was used (tests/registry/test_registry_faults.py runs the
fault table on both, and on the lean HEAD below).

The aiohttp transport also has a lean path for the one request a steady-state check
makes, the manifest HEAD (``LeanHead.head``): sent on the same aiohttp session, with
the headers, timeouts and exception mapping the httpx path gives it, it skips httpx's
request/response model stacked on aiohttp's (half of a check's instructions). The
client takes it only when nothing of httpx's is needed (see ``Session.head``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from monitor.domain import Reason
from monitor.text import clean

if TYPE_CHECKING:
    from aiohttp import ClientResponse, ClientTimeout
    from httpx_aiohttp import AiohttpTransport

__all__ = [
    "ANSWERED",
    "MAX_REDIRECTS",
    "Answer",
    "AnswerHeaders",
    "LeanAnswer",
    "LeanHead",
    "RegistryHTTPClient",
    "ServerDisconnected",
    "TransportFactory",
    "classify_failure",
    "default_transport_factory",
    "describe_failure",
    "failure_reason",
    "httpx_transport",
    "tls_context",
]

TransportFactory = Callable[[ssl.SSLContext | bool], httpx.AsyncBaseTransport]

_MAX_CONNECTIONS = 200
_LIMITS = httpx.Limits(
    max_connections=_MAX_CONNECTIONS, max_keepalive_connections=100, keepalive_expiry=30
)


MAX_REDIRECTS = 5  # registries send manifests and blobs to storage once, not in chains
# A request extension: the answer the lean HEAD already got to this request, which the
# aiohttp transport hands back instead of sending it again (a redirect for httpx to follow).
ANSWERED = "regmon.answered"


class AnswerHeaders(Protocol):
    def get(self, key: str, /) -> str | None: ...


class Answer(Protocol):
    """What is read of a HEAD's answer: an ``httpx.Response`` or a ``LeanAnswer``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> AnswerHeaders: ...

    async def aclose(self) -> None: ...


class LeanAnswer(Answer, Protocol):
    def response(self) -> httpx.Response:
        """The same answer as httpx's transport gives it (no body: a HEAD's)."""
        ...


@runtime_checkable
class LeanHead(Protocol):
    """A transport that can send a HEAD without httpx's request/response model."""

    async def head(
        self, url: str, headers: Mapping[str, str], http_timeout: float
    ) -> LeanAnswer: ...


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The context that verifies registries: ``ca_file`` alone, else the system's CAs.

    The system's CAs are looked up in its hashed certificate directory when there is
    one (OpenSSL reads the issuer it needs at handshake time, ~30 µs to set up)
    instead of parsing the whole bundle up front (~0.1-0.25 s, paid by every
    ``regmon check``, plain-HTTP registries included). The same CAs either way: the
    system's tool (``update-ca-certificates``, ``c_rehash``) writes the bundle and the
    directory from one set. ``SSL_CERT_FILE`` naming another bundle, or no hashed
    directory, is the default as before (the bundle parsed up front).
    """
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    named = os.environ.get(paths.openssl_cafile_env)
    system_bundle = not named or os.path.realpath(named) == os.path.realpath(paths.openssl_cafile)
    if capath and system_bundle and any(name.endswith(".0") for name in _listdir(capath)):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context()


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _import_aiohttp() -> None:
    """Import aiohttp without loading the system's CA bundle twice.

    aiohttp builds two default SSL contexts at import (``aiohttp/connector.py``), each
    parsing the whole bundle: ~470 M instructions, ~0.2 s of every ``regmon run`` and
    ``regmon check`` of many references. regmon never uses them: every request carries
    a context of its own (``tls_context``, or httpx's unverified one for ``insecure``;
    httpx-aiohttp passes it as ``ssl=``). Imported while OpenSSL's default bundle is
    the empty file, they are built empty; the variable is back as it was at once.
    Only while no other thread runs, which could build a context of its own meanwhile.
    """
    if "aiohttp" in sys.modules or threading.active_count() > 1:
        return
    name = ssl.get_default_verify_paths().openssl_cafile_env
    before = os.environ.get(name)
    os.environ[name] = os.devnull
    try:
        import aiohttp  # noqa: F401
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def default_transport_factory(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    _import_aiohttp()
    from aiohttp import ClientSession, DummyCookieJar, TCPConnector
    from httpx_aiohttp import AiohttpTransport

    transport = AiohttpTransport(verify=verify, limits=_LIMITS)

    def session() -> ClientSession:
        # httpx-aiohttp's own session (AiohttpTransport.get_client) without aiohttp's
        # cookie jar, which kept every Set-Cookie of a named host and sent it back
        # (httpx's jar is gone for the same reason: see _NoCookies).
        connector = TCPConnector(
            keepalive_timeout=_LIMITS.keepalive_expiry,
            ssl=transport.ssl_context,
            limit=_MAX_CONNECTIONS,
        )
        return ClientSession(connector=connector, cookie_jar=DummyCookieJar())

    transport.client = session
    return _MappedAiohttp(transport)


def httpx_transport(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    """httpx's own pool (httpcore); kept for measurement and as a fallback."""
    return _MappedHttpcore(httpx.AsyncHTTPTransport(verify=verify, limits=_LIMITS))


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing.

    docker's and containerd's registry clients keep no cookies (Go's ``http.Client``
    has no jar unless given one), and registries authenticate by header; httpx ran
    ``Cookies.extract_cookies`` (urllib's cookie policy) on every answer, ~11 % of a
    check's CPU, for answers that set none.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class RegistryHTTPClient(httpx.AsyncClient):
    """httpx's client, asking every host as written, keeping no cookies.

    Left to itself httpx builds the Host header from ``URL.host``, which decodes an
    IDNA label and raises for one that IDNA 2008 disallows: ``xn--n3h.com`` (from
    distribution/reference's tests) failed before any request ("unexpected
    InvalidCodepoint"). The header from the raw authority is the same bytes for
    every other host. Covers registry and token-realm requests alike.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass  # never set: see _NoCookies

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        target = httpx.URL(url)
        if target.is_absolute_url:
            headers = httpx.Headers(kwargs.pop("headers", None))
            headers.setdefault("Host", target.netloc.decode("ascii"))
            kwargs["headers"] = headers
        # The parsed URL, not the text: httpx would parse it twice more (merge, Request).
        return super().build_request(method, target, **kwargs)


class ServerDisconnected(httpx.ReadError):
    """The server closed the connection before any answer (both transports raise this)."""


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
    """httpx-aiohttp maps every connection failure to ``ConnectTimeout`` (a DNS failure
    became ``timeout``) and lets malformed answers through as aiohttp errors; translate
    each aiohttp error to the httpx error httpcore raises for the same fault."""

    def __init__(self, inner: AiohttpTransport) -> None:
        from aiohttp import ClientSession, ClientTimeout
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        self._inner = inner
        self._session_type = ClientSession
        self._client_timeout = ClientTimeout
        self._map_exceptions = map_aiohttp_exceptions
        self._timeouts: dict[float, ClientTimeout] = {}

    async def head(self, url: str, headers: Mapping[str, str], http_timeout: float) -> LeanAnswer:
        """``HEAD url`` on httpx-aiohttp's own session, as its ``handle_async_request``
        sends it (no redirects, no decompression, its timeout mapping), failing with
        the same httpx exceptions; ``headers`` are all of them, Host included."""
        inner = self._inner
        session = inner.client
        if not isinstance(session, self._session_type):
            session = inner.client = inner.get_client()
        client_timeout = self._timeouts.get(http_timeout)
        if client_timeout is None:
            # httpx's Timeout(t) has connect = read = pool = t; httpx-aiohttp maps them so.
            client_timeout = self._timeouts[http_timeout] = self._client_timeout(
                sock_connect=http_timeout, sock_read=http_timeout, connect=http_timeout
            )
        try:
            response = await session.request(
                "HEAD",
                url,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=client_timeout,
            )
        except Exception:
            # The two mappings the httpx path applies, in its order (no context managers
            # on the way when nothing fails).
            with _map_aiohttp(), self._map_exceptions():
                raise
        return _LeanAiohttpAnswer(response, self._map_exceptions)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answered = request.extensions.pop(ANSWERED, None)
        if isinstance(answered, httpx.Response):
            return answered
        # httpx builds a redirected request around the previous request's stream; given
        # an unread stream httpx-aiohttp sends it as a chunked body ("0\r\n\r\n" after a
        # HEAD), which desynchronises the keep-alive connection. Read it: b"" means none.
        await request.aread()
        with _map_aiohttp():
            response = await self._inner.handle_async_request(request)
        stream = response.stream
        if isinstance(stream, httpx.AsyncByteStream):
            # Swapped in place: a second Response would copy the headers again.
            response.stream = _MappedStream(stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LeanAiohttpAnswer:
    __slots__ = ("_map_exceptions", "_response", "headers", "status_code")

    def __init__(
        self,
        response: ClientResponse,
        map_exceptions: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._response = response
        self._map_exceptions = map_exceptions
        self.status_code = response.status
        self.headers = response.headers

    async def aclose(self) -> None:
        try:  # what httpx-aiohttp's stream does to close: ClientResponse.__aexit__
            self._response.release()
            await self._response.wait_for_close()
        except Exception:
            with _map_aiohttp(), self._map_exceptions():
                raise

    def response(self) -> httpx.Response:
        # As httpx-aiohttp builds it: the raw header pairs, nothing added.
        extensions = {"http_version": b"HTTP/1.1"}
        if self._response.reason:
            extensions["reason_phrase"] = self._response.reason.encode()
        return httpx.Response(
            self.status_code,
            headers=self._response.raw_headers,
            stream=httpx.ByteStream(b""),
            extensions=extensions,
        )


def _aiohttp_equivalent(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx error httpcore raises for the fault behind an aiohttp error."""
    import aiohttp
    from aiohttp import http_exceptions

    for e in _chain(exc):
        if isinstance(e, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout
        if isinstance(e, aiohttp.ServerTimeoutError):
            return httpx.ReadTimeout
        if isinstance(e, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake
            return httpx.ConnectError
        if isinstance(e, aiohttp.ServerDisconnectedError):
            return ServerDisconnected
        if isinstance(e, aiohttp.ClientPayloadError):
            if any(isinstance(c, http_exceptions.HttpProcessingError) for c in _chain(e)):
                return httpx.RemoteProtocolError  # a truncated or badly framed body
            return httpx.ReadError
        if isinstance(e, aiohttp.ClientResponseError | http_exceptions.HttpProcessingError):
            return httpx.RemoteProtocolError
        if isinstance(e, aiohttp.InvalidURL):
            return httpx.UnsupportedProtocol
        if isinstance(e, aiohttp.ClientError):
            return httpx.ReadError if isinstance(e, OSError) else httpx.TransportError
    return None


@contextlib.contextmanager
def _map_aiohttp() -> Iterator[None]:
    import aiohttp

    try:
        yield
    except (
        httpx.TransportError,
        aiohttp.ClientError,
        aiohttp.http_exceptions.HttpProcessingError,
    ) as exc:
        equivalent = _aiohttp_equivalent(exc)
        if equivalent is None or type(exc) is equivalent:
            raise
        raise equivalent(str(exc)) from exc
    except TimeoutError as exc:
        raise httpx.ReadTimeout("timed out") from exc


class _MappedHttpcore(httpx.AsyncBaseTransport):
    """httpcore reports a connection closed before any answer as a protocol error, the
    same type as a malformed answer; only the latter comes from h11's parser."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import h11

        try:
            return await self._inner.handle_async_request(request)
        except httpx.RemoteProtocolError as exc:
            if any(isinstance(e, h11.ProtocolError) for e in _chain(exc)):
                raise
            raise ServerDisconnected(str(exc)) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


_TIMEOUTS: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "timed out connecting"),
    (httpx.ReadTimeout, "timed out waiting for an answer"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
)


def classify_failure(exc: BaseException) -> tuple[Reason, str]:
    """The SPEC §2 reason and a short, secret-free cause for a failed request.

    Decided by exception type and cause chain, so both transports (translated at
    their edge above) give the same answer for the same fault.
    """
    chain = _chain(exc)
    if isinstance(exc, httpx.TooManyRedirects):
        return Reason.PROTOCOL, f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        for kind, text in _TIMEOUTS:
            if isinstance(exc, kind):
                return Reason.TIMEOUT, text
        return Reason.TIMEOUT, "timed out"
    for e in reversed(chain):  # innermost first: aiohttp's wrappers are SSLErrors too
        if isinstance(e, ssl.SSLWantReadError | ssl.SSLWantWriteError):
            continue  # TLS waiting for bytes (seen in a timeout's context), not a failure
        if isinstance(e, ssl.SSLCertVerificationError):  # also ssl.CertificateError
            cause = _clean(getattr(e, "verify_message", None) or "certificate verify failed")
            return Reason.TLS, f"TLS handshake failed ({cause})"
        if isinstance(e, ssl.SSLError):
            cause = _clean((getattr(e, "reason", None) or "").lower().replace("_", " "))
            return Reason.TLS, (
                f"TLS handshake failed ({cause})" if cause else "TLS handshake failed"
            )
    if isinstance(exc, ServerDisconnected):
        return Reason.UNREACHABLE, "the server closed the connection without an answer"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Reason.PROTOCOL, "unsupported URL"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError | httpx.DecodingError):
        return Reason.PROTOCOL, "malformed HTTP answer"
    for e in chain:
        if isinstance(e, socket.gaierror):
            return Reason.UNREACHABLE, f"cannot resolve the host ({_strerror(e)})"
        if isinstance(e, ConnectionRefusedError):
            return Reason.UNREACHABLE, "cannot connect (connection refused)"
        if isinstance(e, ConnectionResetError | BrokenPipeError):
            return Reason.UNREACHABLE, "connection reset by the server"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return Reason.UNREACHABLE, f"cannot connect ({_strerror(e)})"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return Reason.UNREACHABLE, "connection lost"
    return Reason.UNREACHABLE, "cannot connect"


def _strerror(exc: OSError) -> str:
    return _clean(str(exc.strerror).lower())


def _clean(text: str) -> str:
    return clean(text, limit=80)


def failure_reason(exc: BaseException) -> Reason:
    """Which SPEC §2 reason a transport exception means, whatever the transport."""
    return classify_failure(exc)[0]


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free description: 'cannot connect (connection refused)'."""
    return classify_failure(exc)[1]
