"""Registry auth: WWW-Authenticate challenges, bearer tokens, a per-scope token cache,
and the ``httpx.Auth`` flow of one registry request (challenge → token → retry once).

Token fetches are single-flight: concurrent checks of one repository wait for
one token request and then share the token until it expires.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import httpx

from monitor.domain import Reason
from monitor.errors import AccessDenied, AuthError, RegistryError
from monitor.registry.bodies import MAX_TOKEN_BODY_BYTES, read_body
from monitor.registry.credentials import Credential, CredentialStore
from monitor.text import clean

__all__ = [
    "MAX_TOKEN_LENGTH",
    "UNKNOWN",
    "AuthHost",
    "Authorization",
    "Authorizer",
    "Challenge",
    "RegistryAuth",
    "Token",
    "TokenCache",
    "basic_header",
    "fetch_token",
    "parse_challenges",
]

MIN_TOKEN_LIFETIME = 60.0
MAX_TOKEN_LIFETIME = 86400.0
RENEW_EARLY = 5.0
# Real tokens are a few KiB (ECR, GCR, ACR, GitLab); a realm answering more is hostile
# or broken, and whatever we accept is sent back on every request as a header.
MAX_TOKEN_LENGTH = 64 * 1024
# RFC 6750 b64token is narrower; any visible ASCII keeps opaque real-world tokens
# working while refusing spaces, controls and CR/LF (header injection).
_VISIBLE_ASCII = r"[\x21-\x7e]+"

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = rf"\s*({_TCHARS})(?:\s+|$)"
_PARAM_RE = rf'\s*({_TCHARS})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))\s*,?'
# The three are text, compiled (and cached) by ``re`` on the first challenge or token:
# a check of a registry without auth never needs them (~1.9 M instructions at import).


# Challenge and Token are NamedTuples, not frozen dataclasses: as immutable, ~3 M
# instructions cheaper each to create at import (every `regmon check` pays it).
class Challenge(NamedTuple):
    """One parsed challenge; ``scheme`` is lowercase, parameter keys are lowercase."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def error(self) -> str | None:
        return self.params.get("error")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """Parse every ``WWW-Authenticate`` value (RFC 7235); Bearer challenges first.

    Values are quoted-strings or tokens; quoted values may hold commas and
    spaces (``scope="repository:a:pull,push"``), so no naive splitting.
    """
    found: list[Challenge] = []
    for header in headers:
        rest = header
        while rest.strip():
            m = re.match(_SCHEME_RE, rest)
            if not m:
                break
            scheme = m.group(1).lower()
            rest = rest[m.end() :]
            params: dict[str, str] = {}
            while True:
                p = re.match(_PARAM_RE, rest)
                # A token followed by a space and no '=' starts the next challenge.
                if not p:
                    break
                value = p.group(2)
                value = re.sub(r"\\(.)", r"\1", value) if value is not None else p.group(3)
                params[p.group(1).lower()] = value
                rest = rest[p.end() :]
            found.append(Challenge(scheme, params))
            rest = rest.lstrip(" ,")
    found.sort(key=lambda c: c.scheme != "bearer")
    return found


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Token(NamedTuple):
    value: str
    expires_at: float  # time.monotonic() clock

    def valid(self, now: float) -> bool:
        return now < self.expires_at - RENEW_EARLY


def _lifetime(doc: dict[str, Any]) -> float:
    expires_in = doc.get("expires_in")
    if expires_in is None:
        expires_in = MIN_TOKEN_LIFETIME
    elif isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise AuthError(f"token endpoint answer: expires_in is not a number ({_kind(expires_in)})")
    elif isinstance(expires_in, float) and not math.isfinite(expires_in):
        raise AuthError("token endpoint answer: expires_in is not finite")
    # Below the minimum is clamped up as docker does; a lifetime of years is clamped
    # down: a token the registry stops accepting is re-fetched on its 401 anyway.
    lifetime = float(min(max(expires_in, MIN_TOKEN_LIFETIME), MAX_TOKEN_LIFETIME))
    issued = doc.get("issued_at")
    if isinstance(issued, str):
        try:
            issued_at = datetime.fromisoformat(issued.replace("Z", "+00:00"))
            age = time.time() - issued_at.timestamp()
            # A clock ahead of ours (age < 0) is ignored, as regclient does.
            if 0 < age < lifetime:
                lifetime -= age
        except (ValueError, OverflowError, OSError):
            pass
    return max(lifetime, MIN_TOKEN_LIFETIME)


def _kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "a number" if isinstance(value, int | float) else "null")


def _token(doc: object) -> str:
    """The token of a realm's answer, checked to be fit for an Authorization header."""
    if not isinstance(doc, dict):
        raise AuthError(f"token endpoint answered {_kind(doc)}, not a JSON object")
    for key in ("access_token", "token"):  # dist28 prefers access_token
        value = doc.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise AuthError(f"token endpoint answer: {key} is not a string ({_kind(value)})")
        if len(value) > MAX_TOKEN_LENGTH:
            raise AuthError(
                f"token endpoint answer: {key} is longer than {MAX_TOKEN_LENGTH // 1024} KiB"
            )
        if not re.fullmatch(_VISIBLE_ASCII, value, re.ASCII):
            raise AuthError(f"token endpoint answer: {key} has characters a header cannot carry")
        return value
    raise AuthError("token endpoint answer has no token")


def _realm_shown(url: httpx.URL) -> str:
    """The realm for a message, without its query (it may carry anything)."""
    return clean(f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}", limit=100)


async def fetch_token(
    http: httpx.AsyncClient,
    challenge: Challenge,
    scopes: tuple[str, ...],
    credential: Credential | None,
    *,
    request_timeout: float,
    plain_http_ok: bool = False,
) -> Token:
    """Ask the challenge's realm for a token covering ``scopes``.

    GET with one ``scope`` parameter per scope (Basic auth to the token
    server only); POST with the OAuth2 refresh_token grant for identity tokens.
    Credentials go to a plain-HTTP realm only when ``plain_http_ok`` (the registry
    itself is plain HTTP or ``insecure``); else the fetch fails before any request.
    """
    realm = challenge.realm
    if not realm or not realm.startswith(("https://", "http://")):
        shown = clean(realm, limit=100) if realm else "none"
        raise RegistryError(Reason.PROTOCOL, f"bearer challenge has no usable realm ({shown})")
    service = challenge.service or ""
    if credential is not None and credential.registry_token:
        return Token(credential.registry_token, time.monotonic() + 3600)
    try:
        realm_url = httpx.URL(realm)
    except httpx.InvalidURL as exc:
        raise RegistryError(Reason.PROTOCOL, "bearer challenge realm is not a URL") from exc
    sends_secret = credential is not None and bool(credential.identity_token or credential.username)
    if sends_secret and realm_url.scheme == "http" and not plain_http_ok:
        raise AuthError(
            f"refusing to send credentials to plain-HTTP realm {_realm_shown(realm_url)}"
            " (the registry is HTTPS; set insecure: true for it to allow this)"
        )
    request: httpx.Request
    try:
        if credential is not None and credential.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "service": service,
                "client_id": "regmon",
                "scope": " ".join(scopes),
            }
            request = http.build_request("POST", realm_url, data=form, timeout=request_timeout)
        else:
            params: list[tuple[str, str | int | float | bool | None]] = (
                [("service", service)] if service else []
            )
            params += [("scope", s) for s in scopes]
            headers = {}
            if credential is not None and credential.username:
                params.append(("account", credential.username))
                headers["Authorization"] = basic_header(
                    credential.username, credential.password or ""
                )
            # Keep any query the realm already has: params= would replace it.
            url = realm_url.copy_merge_params(params)
            request = http.build_request("GET", url, headers=headers, timeout=request_timeout)
        # A 307/308 re-sends a POST body, the identity token in it, to wherever it points.
        response = await http.send(request, stream=True, follow_redirects=request.method != "POST")
    except httpx.TimeoutException as exc:
        raise AuthError("token endpoint timed out") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise AuthError(f"token endpoint unreachable: {type(exc).__name__}") from exc
    try:
        if response.status_code in (401, 403):
            raise AuthError(
                f"token endpoint refused the credentials (HTTP {response.status_code})",
                http_status=response.status_code,
            )
        if response.status_code != 200:
            raise AuthError(
                f"token endpoint answered HTTP {response.status_code}",
                http_status=response.status_code,
            )
        try:
            body = await read_body(response, MAX_TOKEN_BODY_BYTES, "token endpoint answer")
        except RegistryError as exc:  # everything about the realm's answer is auth_failed
            if exc.reason is Reason.TIMEOUT:
                raise AuthError("token endpoint timed out") from exc
            raise AuthError(str(exc)) from exc
    finally:
        await response.aclose()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise AuthError("token endpoint answered with something that is not JSON") from exc
    value = _token(doc)
    return Token(value, time.monotonic() + _lifetime(doc))


TokenKey = tuple[str, str, tuple[str, ...], str]


class TokenCache:
    """Tokens by (realm, service, scopes, credential id), fetched once per key at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[TokenKey, Token] = {}
        self._locks: dict[TokenKey, asyncio.Lock] = {}
        self._clock = clock
        self.fetches = 0

    async def get(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> Token:
        token = self._tokens.get(key)
        if token is not None and token.valid(self._clock()):
            return token
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is not None and token.valid(self._clock()):
                return token
            self.fetches += 1
            token = await fetch()
            self._tokens[key] = token
            return token

    def peek(self, key: TokenKey) -> Token | None:
        """The cached token for ``key`` while it is valid, without fetching one."""
        token = self._tokens.get(key)
        return token if token is not None and token.valid(self._clock()) else None

    def drop(self, key: TokenKey) -> None:
        """Forget a token the registry rejected, so the next use fetches a new one."""
        self._tokens.pop(key, None)


UNKNOWN: Any = object()  # a host's challenge before discovery learned it
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class AuthHost(Protocol):
    """What auth reads (and learns) of a registry host (session.Host)."""

    name: str
    base_url: str | None
    challenge: Challenge | None

    @property
    def timeout(self) -> float: ...

    @property
    def insecure(self) -> bool: ...


@dataclass(slots=True)
class Authorization:
    """The headers one request carries, and what they were made from."""

    headers: dict[str, str] = field(default_factory=dict)
    credential: Credential | None = None


class Authorizer:
    """Credentials and tokens for the host's current challenge; tokens cached per scope.

    ``http_for(host name)`` is the client a token request goes out on.
    """

    def __init__(
        self,
        credentials: CredentialStore,
        http_for: Callable[[str], httpx.AsyncClient],
        tokens: TokenCache | None = None,
    ) -> None:
        self.credentials = credentials
        self.tokens = tokens or TokenCache()
        self._http_for = http_for

    async def authorize(
        self, host: AuthHost, scopes: tuple[str, ...], *, fresh: bool = False
    ) -> Authorization:
        """Raises AccessDenied when the realm refuses an anonymous token."""
        challenge = host.challenge
        if challenge is None or challenge is UNKNOWN:
            return Authorization()
        credential = await self.credentials.get(host.name)
        if challenge.scheme == "basic":
            if credential is None or credential.username is None:
                return Authorization()
            header = basic_header(credential.username, credential.password or "")
            return Authorization({"Authorization": header}, credential)
        if challenge.scheme != "bearer":
            raise RegistryError(
                Reason.PROTOCOL, f"unsupported auth scheme ({clean(challenge.scheme, limit=40)})"
            )
        key = _token_key(challenge, scopes, credential)
        plain_http_ok = host.insecure or (host.base_url or "").startswith("http://")

        async def fetch() -> Token:
            try:
                return await fetch_token(
                    self._http_for(host.name),
                    challenge,
                    scopes,
                    credential,
                    request_timeout=host.timeout,
                    plain_http_ok=plain_http_ok,
                )
            except AuthError as exc:
                if credential is None and exc.http_status in (401, 403):
                    raise AccessDenied("no credentials", http_status=401) from exc
                if exc.http_status in (401, 403):
                    self.credentials.forget(host.name)
                raise

        if fresh:
            self.tokens.drop(key)
        token = await self.tokens.get(key, fetch)
        return Authorization({"Authorization": f"Bearer {token.value}"}, credential)

    async def ready(self, host: AuthHost, scopes: tuple[str, ...]) -> Mapping[str, str] | None:
        """The headers ``authorize`` gives now when that needs no request (no challenge,
        basic, a valid cached token for the scopes), else None (a token to fetch, an
        unknown or unsupported challenge: ``authorize`` fetches or says why)."""
        challenge = host.challenge
        if challenge is None:
            return _NO_HEADERS
        if challenge is UNKNOWN or challenge.scheme not in ("basic", "bearer"):
            return None
        credential = await self.credentials.get(host.name)
        if challenge.scheme == "basic":
            if credential is None or credential.username is None:
                return _NO_HEADERS
            return {"Authorization": basic_header(credential.username, credential.password or "")}
        token = self.tokens.peek(_token_key(challenge, scopes, credential))
        return None if token is None else {"Authorization": f"Bearer {token.value}"}


def _token_key(
    challenge: Challenge, scopes: tuple[str, ...], credential: Credential | None
) -> TokenKey:
    return (
        challenge.realm or "",
        challenge.service or "",
        scopes,
        credential.id if credential else "anonymous",
    )


class RegistryAuth(httpx.Auth):
    """One registry request's auth: send with what the host's challenge asks for; on a
    401 learn the challenge (or widen the scopes, or renew the token) and retry once.

    No I/O of its own: tokens come from the Authorizer, requests are sent by
    whoever drives the flow. A 401 that remains is decided here: AccessDenied
    (``insufficient_scope``, no credentials) or AuthError (``invalid_token``,
    rejected credentials).
    """

    def __init__(self, host: AuthHost, scopes: tuple[str, ...], authorizer: Authorizer) -> None:
        self._host = host
        self._scopes = scopes
        self._authorizer = authorizer

    async def ready(self) -> Mapping[str, str] | None:
        """The auth headers of the flow's first request when they need no network
        round trip, else None (see ``Authorizer.ready``)."""
        return await self._authorizer.ready(self._host, self._scopes)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        host, scopes = self._host, self._scopes
        auth = await self._authorizer.authorize(host, scopes)
        challenge: Challenge | None = None
        for attempt in (1, 2):
            request.headers.pop("Authorization", None)
            request.headers.update(auth.headers)
            response = yield request
            if response.status_code != 401:
                return
            challenges = parse_challenges(response.headers.get_list("www-authenticate"))
            if not challenges:
                raise RegistryError(
                    Reason.PROTOCOL,
                    f"{host.name} answered 401 without a challenge",
                    http_status=401,
                )
            challenge = challenges[0]
            if attempt == 2:
                break
            known = host.challenge
            if (
                known is None
                or known is UNKNOWN
                or known.scheme != challenge.scheme
                or known.realm != challenge.realm
            ):
                host.challenge = challenge  # the registry wants auth after all: learn it
                auth = await self._authorizer.authorize(host, scopes)
                continue
            if challenge.scheme == "basic":
                break
            if challenge.error == "insufficient_scope":
                wanted = tuple(s for s in challenge.scopes if s not in scopes)
                if not wanted:
                    break  # the token has the scope and the registry still says no
                scopes = wanted + scopes  # some registries read only the first scope
            auth = await self._authorizer.authorize(host, scopes, fresh=True)
        # Still 401 after one re-authentication.
        if challenge is None:  # pragma: no cover - the loop only exits with a challenge
            raise RegistryError(Reason.PROTOCOL, f"{host.name}: authentication loop")
        if challenge.scheme == "bearer" and challenge.error == "insufficient_scope":
            raise AccessDenied("insufficient_scope", http_status=401)
        if challenge.scheme == "bearer" and challenge.error == "invalid_token":
            raise AuthError(f"{host.name} rejected the token (invalid_token)", http_status=401)
        if auth.credential is None:
            raise AccessDenied("no credentials", http_status=401)
        self._authorizer.credentials.forget(host.name)
        raise AuthError(f"{host.name} rejected the credentials (HTTP 401)", http_status=401)
