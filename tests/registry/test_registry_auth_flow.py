"""RegistryAuth is an httpx.Auth flow: httpx itself can drive it (here over a narrow
MockTransport), and a 401 that remains comes out as a typed decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from monitor.errors import AccessDenied, AuthError
from monitor.registry.auth import UNKNOWN, Authorizer, Challenge, RegistryAuth
from monitor.registry.credentials import Credential, CredentialStore

URL = "http://registry.test/v2/team/app/manifests/v1"


@dataclass
class StubHost:
    name: str = "registry.test"
    base_url: str | None = "http://registry.test"
    challenge: Challenge | None = UNKNOWN
    timeout: float = 5.0
    insecure: bool = False


def drive(
    answer: httpx.MockTransport, host: StubHost, credential: Credential | None
) -> tuple[httpx.Response, list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # The flow re-sends the same request object, as httpx's own flows do.
        seen.append((request.url.path, request.headers.get("authorization")))
        return answer.handler(request)  # type: ignore[no-any-return]

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            authorizer = Authorizer(CredentialStore(lambda h: credential), lambda name: http)
            auth = RegistryAuth(host, ("repository:team/app:pull",), authorizer)
            return await http.get(URL, auth=auth)

    return asyncio.run(main()), seen


class Streamed(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def basic_registry(request: httpx.Request) -> httpx.Response:
    if request.headers.get("authorization", "").startswith("Basic "):
        return httpx.Response(200)
    return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})


def test_httpx_drives_challenge_then_retry_once_and_the_host_learns_the_challenge() -> None:
    host = StubHost(challenge=None)  # discovery said: no auth
    response, seen = drive(
        httpx.MockTransport(basic_registry), host, Credential(username="u", password="p")
    )
    assert response.status_code == 200
    path = "/v2/team/app/manifests/v1"
    assert seen == [(path, None), (path, "Basic dTpw")]
    assert host.challenge == Challenge("basic", {"realm": "r"})


def test_a_realm_refusing_an_anonymous_token_is_access_denied() -> None:
    challenge = Challenge("basic", {"realm": "r"})

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": 'Bearer realm="http://registry.test/token",'
                ' error="insufficient_scope",scope="repository:team/app:pull"'
            },
        )

    with pytest.raises(AccessDenied) as denied:
        drive(httpx.MockTransport(refuse), StubHost(challenge=challenge), None)
    assert (denied.value.detail, denied.value.http_status) == ("no credentials", 401)


def test_a_remaining_insufficient_scope_is_access_denied() -> None:
    bearer = Challenge("bearer", {"realm": "http://registry.test/token"})

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":  # a stream: httpx pre-reads content=, json=
            return httpx.Response(200, stream=Streamed(b'{"token": "t"}'))
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": 'Bearer realm="http://registry.test/token",'
                ' error="insufficient_scope",scope="repository:team/app:pull"'
            },
        )

    with pytest.raises(AccessDenied) as denied:
        drive(httpx.MockTransport(answer), StubHost(challenge=bearer), None)
    assert (denied.value.detail, denied.value.http_status) == ("insufficient_scope", 401)


def test_rejected_credentials_are_auth_failed_and_forgotten() -> None:
    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    with pytest.raises(AuthError) as failed:
        drive(
            httpx.MockTransport(reject),
            StubHost(challenge=Challenge("basic", {"realm": "r"})),
            Credential(username="u", password="wrong"),
        )
    assert str(failed.value) == "registry.test rejected the credentials (HTTP 401)"
