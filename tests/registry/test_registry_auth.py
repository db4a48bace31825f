"""monitor.registry.auth: challenge parsing, token fetches, the token cache."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import httpx
import pytest
from support.faults import LoopbackHTTPServer, RecordedRequest, Reply

from monitor.domain import Reason
from monitor.errors import AuthError, RegistryError
from monitor.registry.auth import (
    Challenge,
    Token,
    TokenCache,
    fetch_token,
    parse_challenges,
)
from monitor.registry.credentials import Credential

# --------------------------------------------------------------------------- challenges

CHALLENGE_VECTORS = [
    pytest.param(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:samalba/my-app:pull,push",
        },
        ("repository:samalba/my-app:pull,push",),
        id="quoted-comma-in-scope",
    ),
    pytest.param(
        'Bearer realm="http://127.0.0.1:5814/token",service="test-registry",'
        'scope="repository:team/app:pull",error="insufficient_scope"',
        "bearer",
        {
            "realm": "http://127.0.0.1:5814/token",
            "service": "test-registry",
            "scope": "repository:team/app:pull",
            "error": "insufficient_scope",
        },
        ("repository:team/app:pull",),
        id="insufficient-scope",
    ),
    pytest.param(
        'Bearer realm="https://r.example/token",service="r.example",'
        'scope="repository:a:pull repository:b:pull,push"',
        "bearer",
        {
            "realm": "https://r.example/token",
            "service": "r.example",
            "scope": "repository:a:pull repository:b:pull,push",
        },
        ("repository:a:pull", "repository:b:pull,push"),
        id="several-scopes",
    ),
    pytest.param(
        'BEARER Realm="https://r.example/token?x=1", Service="r.example"',
        "bearer",
        {"realm": "https://r.example/token?x=1", "service": "r.example"},
        (),
        id="uppercase-scheme-and-keys",
    ),
    pytest.param(
        r'Bearer realm="a\"b"',
        "bearer",
        {"realm": 'a"b'},
        (),
        id="escaped-quote",
    ),
    pytest.param(
        'Basic realm="test-realm"',
        "basic",
        {"realm": "test-realm"},
        (),
        id="basic",
    ),
    pytest.param(
        'Bearer realm="https://t.example/token",service=registry.example,error=invalid_token',
        "bearer",
        {
            "realm": "https://t.example/token",
            "service": "registry.example",
            "error": "invalid_token",
        },
        (),
        id="token-values-unquoted",
    ),
]


@pytest.mark.parametrize(("header", "scheme", "params", "scopes"), CHALLENGE_VECTORS)
def test_parse_challenge_vectors(
    header: str, scheme: str, params: dict[str, str], scopes: tuple[str, ...]
) -> None:
    (challenge,) = parse_challenges([header])
    assert challenge.scheme == scheme
    assert challenge.params == params
    assert challenge.scopes == scopes
    assert challenge.realm == params["realm"]


def test_two_headers_put_bearer_first() -> None:
    challenges = parse_challenges(
        ['Basic realm="basic-realm"', 'Bearer realm="https://t.example/token",service="svc"']
    )
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[0].realm == "https://t.example/token"
    assert challenges[0].service == "svc"
    assert challenges[1].realm == "basic-realm"


def test_two_challenges_in_one_header() -> None:
    challenges = parse_challenges(['Basic realm="b", Bearer realm="https://t/token",service="s"'])
    assert [(c.scheme, c.realm) for c in challenges] == [
        ("bearer", "https://t/token"),
        ("basic", "b"),
    ]
    assert challenges[0].service == "s"


def test_no_header_no_challenge() -> None:
    assert parse_challenges([]) == []


# --------------------------------------------------------------------------- token cache


def test_token_cache_is_single_flight() -> None:
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # every other get() arrives while this fetch is in flight
        return Token(f"tok{calls}", time.monotonic() + 300)

    async def main() -> list[Token]:
        cache = TokenCache()
        key = ("https://t/token", "svc", ("repository:a:pull",), "anonymous")
        tokens = await asyncio.gather(*(cache.get(key, fetch) for _ in range(50)))
        assert cache.fetches == 1
        return tokens

    tokens = asyncio.run(main())
    assert calls == 1
    assert {t.value for t in tokens} == {"tok1"}


def test_token_cache_keys_are_separate() -> None:
    calls: list[str] = []

    def fetcher(name: str) -> Callable[[], Awaitable[Token]]:
        async def fetch() -> Token:
            calls.append(name)
            return Token(name, time.monotonic() + 300)

        return fetch

    async def main() -> tuple[str, str, str]:
        cache = TokenCache()
        a = ("r", "s", ("repository:a:pull",), "anonymous")
        b = ("r", "s", ("repository:b:pull",), "anonymous")
        ta = await cache.get(a, fetcher("a"))
        tb = await cache.get(b, fetcher("b"))
        ta2 = await cache.get(a, fetcher("a-again"))
        return ta.value, tb.value, ta2.value

    assert asyncio.run(main()) == ("a", "b", "a")
    assert calls == ["a", "b"]


def test_token_cache_refetches_an_expired_token() -> None:
    now = [1000.0]
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        return Token(f"tok{calls}", now[0] + 60)

    async def main() -> list[str]:
        cache = TokenCache(clock=lambda: now[0])
        key = ("r", "s", ("repository:a:pull",), "anonymous")
        seen = [(await cache.get(key, fetch)).value]
        now[0] += 30  # well inside the lifetime
        seen.append((await cache.get(key, fetch)).value)
        now[0] += 31  # past expiry (1061 > 1060)
        seen.append((await cache.get(key, fetch)).value)
        return seen

    assert asyncio.run(main()) == ["tok1", "tok1", "tok2"]
    assert calls == 2


def test_token_cache_renews_shortly_before_expiry() -> None:
    now = [0.0]
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        return Token(f"tok{calls}", now[0] + 60)

    async def main() -> list[str]:
        cache = TokenCache(clock=lambda: now[0])
        key = ("r", "s", (), "anonymous")
        seen = [(await cache.get(key, fetch)).value]
        now[0] = 58.0  # 2 s before expiry: too close to use (the request may arrive late)
        seen.append((await cache.get(key, fetch)).value)
        return seen

    assert asyncio.run(main()) == ["tok1", "tok2"]


def test_token_cache_drop_forces_a_new_fetch() -> None:
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        return Token(f"tok{calls}", time.monotonic() + 300)

    async def main() -> list[str]:
        cache = TokenCache()
        key = ("r", "s", (), "anonymous")
        first = (await cache.get(key, fetch)).value
        cache.drop(key)
        return [first, (await cache.get(key, fetch)).value]

    assert asyncio.run(main()) == ["tok1", "tok2"]


# --------------------------------------------------------------------------- fetch_token


class TokenServer(LoopbackHTTPServer):
    """Answers every request with ``status`` and ``doc`` (JSON), recording what it got."""

    def __init__(self, doc: object = None, status: int = 200) -> None:
        super().__init__()
        self.doc = {"token": "t", "expires_in": 10} if doc is None else doc
        self.status = status

    def respond(self, request: RecordedRequest) -> Reply:
        return Reply(
            self.status, [("Content-Type", "application/json")], json.dumps(self.doc).encode()
        )


def _fetch(
    challenge: Challenge,
    scopes: tuple[str, ...],
    credential: Credential | None,
    *,
    plain_http_ok: bool = True,
) -> Token:
    async def main() -> Token:
        async with httpx.AsyncClient(follow_redirects=True) as http:
            return await fetch_token(
                http,
                challenge,
                scopes,
                credential,
                request_timeout=5.0,
                plain_http_ok=plain_http_ok,
            )

    return asyncio.run(main())


def test_short_expires_in_is_clamped_to_60_seconds() -> None:
    with TokenServer({"token": "t", "expires_in": 10}) as server:
        before = time.monotonic()
        token = _fetch(Challenge("bearer", {"realm": f"{server.url}/token"}), (), None)
        after = time.monotonic()
    assert token.value == "t"
    assert before + 60 <= token.expires_at <= after + 60
    assert token.valid(after + 50)  # a 10 s lifetime would be long gone


def test_missing_expires_in_defaults_to_60_seconds() -> None:
    with TokenServer({"token": "t"}) as server:
        before = time.monotonic()
        token = _fetch(Challenge("bearer", {"realm": f"{server.url}/token"}), (), None)
        after = time.monotonic()
    assert before + 60 <= token.expires_at <= after + 60


def test_long_expires_in_is_kept() -> None:
    with TokenServer({"access_token": "a", "expires_in": 900}) as server:
        before = time.monotonic()
        token = _fetch(Challenge("bearer", {"realm": f"{server.url}/token"}), (), None)
    assert token.value == "a"
    assert token.expires_at >= before + 899


def test_get_sends_one_scope_per_parameter_and_keeps_the_realm_query() -> None:
    with TokenServer() as server:
        challenge = Challenge("bearer", {"realm": f"{server.url}/token?x=1", "service": "svc"})
        _fetch(challenge, ("repository:a:pull", "repository:b:pull,push"), None)
        (request,) = server.requests
    assert request.method == "GET"
    assert request.path == "/token"
    query = parse_qs(request.query)
    assert query["x"] == ["1"]
    assert query["service"] == ["svc"]
    assert query["scope"] == ["repository:a:pull", "repository:b:pull,push"]
    # anonymous: no account and no Authorization
    assert "account" not in query
    assert "authorization" not in request.headers


def test_get_with_credentials_sends_basic_and_account() -> None:
    with TokenServer() as server:
        challenge = Challenge("bearer", {"realm": f"{server.url}/token", "service": "svc"})
        _fetch(challenge, ("repository:a:pull",), Credential(username="ci", password="s3cret"))
        (request,) = server.requests
    query = parse_qs(request.query)
    assert query["account"] == ["ci"]
    assert query["scope"] == ["repository:a:pull"]
    expected = "Basic " + base64.b64encode(b"ci:s3cret").decode()
    assert request.headers["authorization"] == expected


def test_identity_token_uses_post_refresh_token_grant() -> None:
    with TokenServer({"access_token": "from-refresh", "expires_in": 300}) as server:
        challenge = Challenge("bearer", {"realm": f"{server.url}/token?x=1", "service": "svc"})
        token = _fetch(
            challenge,
            ("repository:a:pull", "repository:b:pull"),
            Credential(identity_token="refresh-me"),
        )
        (request,) = server.requests
    assert token.value == "from-refresh"
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = parse_qs(request.body.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["refresh-me"]
    assert form["service"] == ["svc"]
    # OAuth2: one scope parameter, scopes separated by spaces
    assert form["scope"] == ["repository:a:pull repository:b:pull"]
    assert "client_id" in form
    assert "authorization" not in request.headers


def test_registry_token_is_used_without_a_request() -> None:
    with TokenServer() as server:
        token = _fetch(
            Challenge("bearer", {"realm": f"{server.url}/token"}),
            ("repository:a:pull",),
            Credential(registry_token="ready-made"),
        )
        assert server.requests == []
    assert token.value == "ready-made"


@pytest.mark.parametrize("status", [401, 403])
def test_token_endpoint_refusal_is_an_auth_error(status: int) -> None:
    with TokenServer({"errors": [{"code": "UNAUTHORIZED"}]}, status=status) as server:
        with pytest.raises(AuthError) as info:
            _fetch(
                Challenge("bearer", {"realm": f"{server.url}/token"}),
                ("repository:a:pull",),
                Credential(username="ci", password="wrong"),
            )
    assert info.value.reason is Reason.AUTH_FAILED
    assert info.value.http_status == status
    assert "wrong" not in str(info.value)


@pytest.mark.parametrize(
    "doc", [{"expires_in": 300}, {"token": ""}, ["t"]], ids=["no-token", "empty", "array"]
)
def test_token_endpoint_answer_without_token_is_an_auth_error(doc: object) -> None:
    with TokenServer(doc) as server:
        with pytest.raises(AuthError):
            _fetch(Challenge("bearer", {"realm": f"{server.url}/token"}), (), None)


def test_challenge_without_realm_is_a_protocol_error() -> None:
    with pytest.raises(RegistryError) as info:
        _fetch(Challenge("bearer", {"service": "svc"}), (), None)
    assert info.value.reason is Reason.PROTOCOL


@pytest.mark.parametrize(
    "credential",
    [Credential(username="ci", password="s3cret"), Credential(identity_token="refresh-me")],
    ids=["basic", "identity-token"],
)
def test_no_credentials_to_a_plain_http_realm_unless_allowed(credential: Credential) -> None:
    with TokenServer() as server:
        shown = f"{server.url}/token"
        realm = f"{shown}?secret=not-shown"
        with pytest.raises(AuthError) as info:
            _fetch(Challenge("bearer", {"realm": realm}), (), credential, plain_http_ok=False)
        assert server.requests == []
        anonymous = _fetch(Challenge("bearer", {"realm": realm}), (), None, plain_http_ok=False)
        assert anonymous.value == "t"
    assert str(info.value) == (
        f"refusing to send credentials to plain-HTTP realm {shown}"
        " (the registry is HTTPS; set insecure: true for it to allow this)"
    )


class RedirectServer(LoopbackHTTPServer):
    def __init__(self, location: str, status: int = 307) -> None:
        super().__init__()
        self.location = location
        self.status = status

    def respond(self, request: RecordedRequest) -> Reply:
        return Reply(self.status, [("Location", self.location)])


def test_an_identity_token_post_does_not_follow_a_redirect() -> None:
    with TokenServer() as elsewhere, RedirectServer(f"{elsewhere.url}/token") as realm:
        with pytest.raises(AuthError) as info:
            _fetch(
                Challenge("bearer", {"realm": f"{realm.url}/token"}),
                (),
                Credential(identity_token="refresh-me"),
            )
        assert elsewhere.requests == []  # a 307 would have re-sent the token in the body
    assert (str(info.value), info.value.http_status) == ("token endpoint answered HTTP 307", 307)
