"""Per-registry session state shared by every endpoint family (manifests, tags/list).

One ``Host`` per registry: base URL and scheme, the learned challenge, back-off
after a 429, rate-limit values, and the registry's one concurrency gate. The
gate belongs to a ``RegistrySlots`` that outlives clients, so a reload that
replaces the client (or changes ``max_concurrency``) resizes the same gate
instead of opening a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from typing import Literal, NamedTuple, TypeVar

import httpx

from monitor.domain import Reason
from monitor.errors import RegistryError
from monitor.headers import parse_retry_after
from monitor.reference import ImageReference, is_loopback
from monitor.registry.auth import UNKNOWN, Challenge, RegistryAuth, parse_challenges
from monitor.registry.bodies import ACCEPT_ENCODING
from monitor.registry.transport import (
    ANSWERED,
    MAX_REDIRECTS,
    Answer,
    LeanHead,
    RegistryHTTPClient,
    TransportFactory,
    default_transport_factory,
    describe_failure,
    failure_reason,
    tls_context,
)

__all__ = [
    "UNKNOWN",
    "Gate",
    "Host",
    "ManifestMethod",
    "RegistrySettings",
    "RegistrySlots",
    "RequestObserver",
    "Session",
]

# (registry, method, code) with code "error" for a request that got no HTTP answer.
RequestObserver = Callable[[str, str, str], None]
ManifestMethod = Literal["head", "get"]
DEFAULT_RETRY_AFTER = 1.0  # a 429 without a usable Retry-After
_A = TypeVar("_A", bound=Answer)


class RegistrySettings(NamedTuple):  # not a frozen dataclass: ~3 M instructions cheaper to create
    """Per-registry knobs (SPEC §4 ``registries:``); the defaults here are the config's too."""

    insecure: bool = False
    ca_file: str | None = None
    max_concurrency: int = 8
    timeout: float = 10.0
    manifest_method: ManifestMethod = "head"


# The gates this context already holds: a check takes its registry's gate before
# its budget starts, and its own requests (and tasks it spawns) must not queue
# behind it for a second slot of the same gate.
_HELD: ContextVar[frozenset[Gate]] = ContextVar("regmon_registry_gates_held", default=frozenset())


class Gate:
    """A FIFO semaphore whose limit can change while it is held (config reload).

    Shrinking lets the holders finish and admits no one until fewer than the new
    limit remain; growing admits waiters at once.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    def resize(self, limit: int) -> None:
        self._limit = limit
        self._wake()

    async def acquire(self) -> None:
        if self._in_use < self._limit and not self._waiters:
            self._in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled: hand the slot on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        """One slot for this context; a no-op where the context holds one already."""
        return _Hold(self)


class _Hold:
    """``Gate.hold()``: a class, not a generator context manager, as it is entered
    twice per check (the check's slot, then its request's)."""

    __slots__ = ("_gate", "_token")

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._token: Token[frozenset[Gate]] | None = None

    async def __aenter__(self) -> None:
        held = _HELD.get()
        if self._gate in held:
            return
        await self._gate.acquire()
        self._token = _HELD.set(held | {self._gate})

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _HELD.reset(self._token)
            self._token = None
            self._gate.release()


class RegistrySlots:
    """The concurrency gate of each registry (``max_concurrency``), one per host.

    Callers take a check's slot *before* its budget and clock start: when many
    checks are due at once, waiting for a slot is not the registry timing out,
    and ``checked_at`` is when the check ran. The client's requests pass through
    the same gate (free for a context that holds it).
    """

    def __init__(self) -> None:
        self._gates: dict[str, Gate] = {}

    def gate(self, api_host: str, limit: int) -> Gate:
        key = api_host.lower()
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = Gate(limit)
        elif gate.limit != limit:
            gate.resize(limit)
        return gate

    def get(self, ref: ImageReference, limit: int) -> contextlib.AbstractAsyncContextManager[None]:
        return self.gate(ref.api_host, limit).hold()


class Host:
    """What we know about one registry host."""

    def __init__(self, name: str, settings: RegistrySettings, gate: Gate) -> None:
        self.name = name
        self.settings = settings
        self.gate = gate
        self.base_url: str | None = None
        self.challenge: Challenge | None = UNKNOWN
        self.discover_lock = asyncio.Lock()
        self.backoff_until = 0.0
        self.ratelimit_limit: int | None = None
        self.ratelimit_remaining: int | None = None
        # The lean HEAD's request headers but Authorization, by Accept (see Session.head).
        self.head_headers: dict[str, dict[str, str]] = {}

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def insecure(self) -> bool:
        return self.settings.insecure


def _ratelimit(value: str | None) -> int | None:
    if not value:
        return None
    head = value.split(",")[0].split(";")[0].strip()
    return int(head) if head.isascii() and head.isdigit() else None


class Session:
    """Hosts, HTTP clients (one per TLS setup), the gate, back-off and discovery."""

    def __init__(
        self,
        *,
        settings_for: Callable[[str], RegistrySettings],
        transport_factory: TransportFactory | None = None,
        observer: RequestObserver | None = None,
        slots: RegistrySlots | None = None,
    ) -> None:
        self._settings_for = settings_for
        self._transport_factory = transport_factory or default_transport_factory
        self._observer = observer
        self.slots = slots or RegistrySlots()
        self._hosts: dict[str, Host] = {}
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}
        self._lean: dict[tuple[bool, str | None], LeanHead | None] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def host(self, api_host: str) -> Host:
        key = api_host.lower()
        host = self._hosts.get(key)
        if host is None:
            settings = self._settings_for(key)
            gate = self.slots.gate(key, settings.max_concurrency)
            host = self._hosts[key] = Host(api_host, settings, gate)
        return host

    def known(self, api_host: str) -> Host | None:
        return self._hosts.get(api_host.lower())

    def http(self, settings: RegistrySettings) -> httpx.AsyncClient:
        key = (settings.insecure, settings.ca_file)
        client = self._clients.get(key)
        if client is None:
            verify: ssl.SSLContext | bool
            if settings.insecure:
                verify = False
            else:
                try:
                    verify = tls_context(settings.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    reason = getattr(exc, "strerror", None) or type(exc).__name__
                    raise RegistryError(
                        Reason.TLS, f"ca_file {settings.ca_file}: {reason}"
                    ) from exc
            transport = self._transport_factory(verify)
            client = RegistryHTTPClient(
                transport=transport,
                follow_redirects=True,  # httpx drops Authorization on a cross-origin redirect
                max_redirects=MAX_REDIRECTS,
                headers={"User-Agent": "regmon", "Accept-Encoding": ACCEPT_ENCODING},
            )
            self._clients[key] = client
            self._lean[key] = transport if isinstance(transport, LeanHead) else None
        return client

    def _observe(self, host: Host, method: str, code: str) -> None:
        if self._observer is not None:
            self._observer(host.name, method, code)

    async def send(
        self,
        host: Host,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        auth: httpx.Auth | None = None,
        observe_failure: bool = True,
        answered: httpx.Response | None = None,
    ) -> httpx.Response:
        """One request through the registry's gate; body not read yet.

        With ``auth``, its flow is driven here as httpx would (each request it
        yields is sent, the answer handed back), so that every request, a retry
        after a 401 too, passes the gate, the back-off and the request metrics.
        ``observe_failure=False`` keeps a probe whose failure is expected (HTTPS
        tried first on a plain-HTTP loopback registry) out of the request metrics.
        ``answered``: what the lean HEAD got to the flow's first request, a 401
        for the flow (counted there) or a redirect for httpx to follow (counted
        as the answer it ends in, as httpx's redirects are).
        """
        http = self.http(host.settings)
        request = http.build_request(method, url, headers=headers, timeout=host.settings.timeout)
        if auth is None:
            return await self._send_one(host, http, request, observe_failure)
        flow = auth.async_auth_flow(request)
        request = await flow.__anext__()
        while True:
            if answered is not None and answered.status_code == 401:
                response, answered = answered, None
            else:
                if answered is not None:  # the transport hands it back to httpx
                    request.extensions[ANSWERED] = answered
                    answered = None
                response = await self._send_one(host, http, request, observe_failure)
            if response.status_code == 401:
                # The flow reads its headers only: free the connection before a token fetch.
                await response.aclose()
            try:
                request = await flow.asend(response)
            except StopAsyncIteration:
                return response
            except BaseException:
                await response.aclose()
                raise
            await response.aclose()

    async def head(self, host: Host, url: str, accept: str, auth: RegistryAuth) -> Answer:
        """``HEAD url`` with ``auth``: on the transport's lean path when it has one and
        the auth needs no round trip (the steady state), else as ``send``.

        A 401 or a redirect on the lean path goes on through ``send`` from the
        answer already got (the auth flow learns or renews; httpx follows), so the
        requests, the metrics and the answer are those of the httpx path.
        """
        http = self.http(host.settings)
        transport = self._lean.get((host.settings.insecure, host.settings.ca_file))
        authorization = None if transport is None else await auth.ready()
        if transport is None or authorization is None:
            return await self.send(host, "HEAD", url, {"Accept": accept}, auth=auth)
        lean = transport
        headers = host.head_headers.get(accept)
        if headers is None:
            # httpx's own request headers for it, as httpx-aiohttp hands them to aiohttp.
            request = http.build_request("HEAD", url, headers={"Accept": accept})
            headers = host.head_headers[accept] = dict(request.headers)
        if authorization:
            headers = {**headers, **{k.lower(): v for k, v in authorization.items()}}
        timeout = host.settings.timeout
        answer = await self._exchange(host, "HEAD", True, lambda: lean.head(url, headers, timeout))
        status = answer.status_code
        if 300 <= status < 400:  # observed once followed, as httpx's are
            await answer.aclose()
            return await self.send(
                host, "HEAD", url, {"Accept": accept}, auth=auth, answered=answer.response()
            )
        await self._answered(host, "HEAD", answer)
        if status != 401:
            return answer
        await answer.aclose()
        return await self.send(
            host, "HEAD", url, {"Accept": accept}, auth=auth, answered=answer.response()
        )

    async def _send_one(
        self, host: Host, http: httpx.AsyncClient, request: httpx.Request, observe_failure: bool
    ) -> httpx.Response:
        response = await self._exchange(
            host, request.method, observe_failure, lambda: http.send(request, stream=True)
        )
        return await self._answered(host, request.method, response)

    async def _exchange(
        self, host: Host, method: str, observe_failure: bool, send: Callable[[], Awaitable[_A]]
    ) -> _A:
        """``send()`` through the back-off and the gate, its failure a RegistryError."""
        delay = host.backoff_until - time.monotonic()
        if delay > 0:
            raise RegistryError(Reason.RATE_LIMITED, f"{host.name} is backing off after HTTP 429")
        async with host.gate.hold():
            try:
                return await send()
            except httpx.HTTPError as exc:
                if observe_failure:
                    self._observe(host, method, "error")
                raise RegistryError(
                    failure_reason(exc), f"{host.name}: {describe_failure(exc)}"
                ) from exc

    async def _answered(self, host: Host, method: str, response: _A) -> _A:
        """Count the answer, learn the rate limit; a 429 backs the host off and raises."""
        self._observe(host, method, str(response.status_code))
        limit = _ratelimit(response.headers.get("ratelimit-limit"))
        if limit is not None:
            host.ratelimit_limit = limit
            host.ratelimit_remaining = _ratelimit(response.headers.get("ratelimit-remaining"))
        if response.status_code == 429:
            await response.aclose()
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is None:
                wait = DEFAULT_RETRY_AFTER
            host.backoff_until = max(host.backoff_until, time.monotonic() + wait)
            raise RegistryError(
                Reason.RATE_LIMITED, f"{host.name} answered HTTP 429", http_status=429
            )
        return response

    @contextlib.asynccontextmanager
    async def response(
        self,
        host: Host,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        observe_failure: bool = True,
    ) -> AsyncIterator[httpx.Response]:
        response = await self.send(host, method, url, headers, observe_failure=observe_failure)
        try:
            yield response
        finally:
            await response.aclose()

    async def discover(self, host: Host) -> None:
        """Learn scheme and challenge with one ``GET /v2/`` (once per registry)."""
        if host.challenge is not UNKNOWN:
            return
        async with host.discover_lock:
            if host.challenge is not UNKNOWN:
                return
            plain_ok = host.settings.insecure or is_loopback(host.name)
            schemes = ("https", "http") if plain_ok else ("https",)
            last: RegistryError | None = None
            for scheme in schemes:
                base = f"{scheme}://{host.name}"
                try:
                    final = scheme == schemes[-1]
                    async with self.response(
                        host, "GET", base + "/v2/", {}, observe_failure=final
                    ) as response:
                        status = response.status_code
                        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
                except RegistryError as exc:
                    if exc.reason in (Reason.RATE_LIMITED, Reason.TIMEOUT):
                        raise
                    last = exc
                    continue
                if status == 401:
                    challenge = challenges[0] if challenges else None
                    if challenge is None:
                        raise RegistryError(
                            Reason.PROTOCOL,
                            f"{host.name} answered 401 without a challenge",
                            http_status=401,
                        )
                elif status < 300 or status == 404:
                    # 404 on /v2/: some proxies only route repository paths; the manifest
                    # request will tell.
                    challenge = None
                elif status >= 500:
                    raise RegistryError(
                        Reason.SERVER_ERROR,
                        f"{host.name} answered HTTP {status}",
                        http_status=status,
                    )
                else:
                    raise RegistryError(
                        Reason.PROTOCOL,
                        f"{host.name} answered HTTP {status} on /v2/",
                        http_status=status,
                    )
                host.base_url = base
                host.challenge = challenge
                return
            raise last or RegistryError(Reason.UNREACHABLE, f"{host.name}: no scheme worked")

    def ratelimit(self, registry: str) -> tuple[int | None, int | None]:
        host = self.known(registry)
        return (host.ratelimit_limit, host.ratelimit_remaining) if host else (None, None)

    async def wait_for_backoff(self, registry: str) -> None:
        """Sleep while the registry is backing off after a 429."""
        host = self.known(registry)
        if host is not None:
            delay = host.backoff_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
