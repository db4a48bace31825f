"""The lean manifest HEAD (aiohttp's session, no httpx model) gives what the httpx path
gives: the same request bytes, the same requests and metrics when a 401 or a redirect
hands the answer back to httpx, the same failures (the fault table in
test_registry_faults.py runs it as its own column)."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.checks import checks, run_checks
from support.faults import Fault, WireRequest, WireServer, bad_request, http_answer, resolve_names
from support.images import ImagePusher
from support.registry import RegistryServer
from support.token_issuer import PASSWORD, USERNAME, TokenIssuer
from support.transports import TRANSPORTS, LeanCounter

from monitor.domain import CheckResult, Reason, Status
from monitor.registry.client import RegistryClient, RegistrySettings
from monitor.registry.credentials import Credential, CredentialStore
from monitor.registry.transport import TransportFactory

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + hashlib.sha256(b"{}").hexdigest()
PING = http_answer(200, {"Content-Type": "application/json"}, b"{}")
PRESENT = http_answer(
    200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST, "Content-Length": "2"}
)
BASIC = "Basic " + base64.b64encode(b"ci:s3cret").decode()
MANIFEST = "/v2/team/app/manifests/v1"

Row = tuple[str, str]  # (method, code) as the request metrics count them


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    mapping: dict[str, str] = {}
    with resolve_names(mapping):
        yield mapping


def factory(transport: str, lean: LeanCounter) -> TransportFactory:
    return lean if transport == "lean" else TRANSPORTS[transport]


def credentials(credential: Credential | None = None) -> CredentialStore:
    return CredentialStore(lambda host: credential, docker_config=Path("/nonexistent-regmon"))


# --------------------------------------------------------------------------- the request


def _basic_or_anonymous(auth: str) -> Callable[[WireRequest], bytes | Fault]:
    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        if auth == "basic" and request.headers.get("authorization") != BASIC:
            return http_answer(401, {"WWW-Authenticate": 'Basic realm="r"'})
        return PING if request.path == "/v2/" else PRESENT

    return respond


@pytest.mark.parametrize("auth", ["anonymous", "basic"])
def test_the_lean_head_sends_the_bytes_the_httpx_path_sends(auth: str) -> None:
    credential = Credential(USERNAME, PASSWORD) if auth == "basic" else None
    lean = LeanCounter()
    sent: dict[str, list[list[tuple[bytes, bytes]]]] = {}
    with WireServer(_basic_or_anonymous(auth)) as server:
        ref = f"{server.host}/team/app:v1"
        for transport in ("aiohttp", "lean"):
            before = len(server.requests)

            results = run_checks(
                ref,
                2,
                transport_factory=factory(transport, lean),
                credentials=credentials(credential),
            )
            assert [(r.status, r.digest) for r in results] == [(Status.PRESENT, DIGEST)] * 2
            heads = [r for r in server.requests[before:] if r.method == "HEAD"]
            sent[transport] = [[(k, v) for k, v in r.headers.raw] for r in heads]
    assert len(lean.heads) == 2  # both HEADs of the lean run, none of the other
    assert sent["lean"] == sent["aiohttp"]
    names = [name.lower() for name, _ in sent["lean"][0]]
    want = [b"host", b"connection", b"user-agent", b"accept-encoding", b"accept"]
    assert names == want + ([b"authorization"] if auth == "basic" else [])


# --------------------------------------------------------------------------- handed back to httpx


@pytest.mark.parametrize("transport", ["aiohttp", "lean"])
def test_a_401_on_a_cached_token_after_the_registry_changed_keys_renews_it_once(
    transport: str, registry_factory: Callable[..., RegistryServer]
) -> None:
    """The registry restarted trusting a new signing key: the cached token is refused
    (401 invalid_token) and the auth flow fetches one more, from that 401, as on the
    httpx path: HEAD 401, token, HEAD 200; then the lean way again."""
    lean = LeanCounter()
    rows: list[Row] = []
    with TokenIssuer() as issuer:
        registry = registry_factory("token", issuer=issuer)
        with ImagePusher(registry.url, auth=(USERNAME, PASSWORD)) as pusher:
            pusher.push_image("public/app", "v1", "oci")
        issuer.reset()

        async def main() -> list[list[Any]]:
            async with RegistryClient(
                transport_factory=factory(transport, lean),
                observer=lambda registry, method, code: rows.append((method, code)),
                credentials=credentials(),
            ) as client:
                ref = f"{registry.host}/public/app:v1"
                steps: list[list[Any]] = []
                for step in ("first", "new keys", "after"):
                    if step == "new keys":
                        issuer.rotate_key()
                        await asyncio.to_thread(registry.restart)
                    marks = len(rows), len(lean.heads), len(issuer.requests)
                    [result] = await checks(client, ref, 1)
                    steps.append(
                        [
                            (result.status, result.reason),
                            rows[marks[0] :],
                            len(lean.heads) - marks[1],
                            len(issuer.requests) - marks[2],
                        ]
                    )
                return steps

        first, renewed, after = asyncio.run(main())
    present = (Status.PRESENT, None)
    lean_heads = transport == "lean"
    assert first == [present, [("GET", "401"), ("HEAD", "200")], 0, 1]  # no token yet: httpx
    assert renewed == [present, [("HEAD", "401"), ("HEAD", "200")], int(lean_heads), 1]
    assert after == [present, [("HEAD", "200")], int(lean_heads), 0]


def _redirecting(request: WireRequest) -> bytes | Fault:
    if not request.valid:
        return bad_request(request)
    if request.path == "/v2/":
        return PING
    if request.path == MANIFEST:
        return http_answer(307, {"Location": "/storage/manifest"})
    return PRESENT if request.path == "/storage/manifest" else http_answer(404)


@pytest.mark.parametrize("transport", ["aiohttp", "lean"])
def test_a_redirect_on_the_lean_head_is_followed_by_httpx_from_the_answer_got(
    transport: str,
) -> None:
    lean = LeanCounter()
    rows: list[Row] = []
    with WireServer(_redirecting) as server:
        results = run_checks(
            f"{server.host}/team/app:v1",
            3,
            transport_factory=factory(transport, lean),
            observer=lambda registry, method, code: rows.append((method, code)),
        )
        requests = [(r.method, r.path) for r in server.requests if r.valid]
    assert [(r.status, r.digest) for r in results] == [(Status.PRESENT, DIGEST)] * 3
    assert len(lean.heads) == (3 if transport == "lean" else 0)
    # One request per hop, one metric per followed request: as httpx alone.
    assert requests == [("GET", "/v2/")] + [("HEAD", MANIFEST), ("HEAD", "/storage/manifest")] * 3
    assert rows == [("GET", "200")] + [("HEAD", "200")] * 3


# --------------------------------------------------------------------------- the wire


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_hung_head_cancelled_by_the_check_budget_leaves_nothing_open(transport: str) -> None:
    """The budget (0.3 s) ends the check long before the read timeout (10 s): the
    request is cancelled inside the transport, its connection dropped (the next check
    opens another and gets its answer), and nothing is left unclosed."""
    lean = LeanCounter()
    loop_errors: list[dict[str, Any]] = []
    hung_on: list[int] = []

    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        if request.path == "/v2/":
            return PING
        if not hung_on:
            hung_on.append(request.connection)
            return Fault.HANG
        return PRESENT

    with WireServer(respond) as server:

        async def main() -> list[CheckResult]:
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, context: loop_errors.append(context)
            )
            async with RegistryClient(
                transport_factory=factory(transport, lean),
                settings_for=lambda host: RegistrySettings(timeout=10.0),
            ) as client:
                ref = f"{server.host}/team/app:v1"
                hung = await checks(client, ref, 1, budget=0.3)
                answered = await checks(client, ref, 1)
            gc.collect()
            return hung + answered

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hung, answered = asyncio.run(main())
            gc.collect()
        heads = [r.connection for r in server.requests if r.method == "HEAD"]
    assert (hung.status, hung.reason, hung.detail) == (
        Status.ERROR,
        Reason.TIMEOUT,
        "no answer within 0.3s",
    )
    assert (answered.status, answered.digest) == (Status.PRESENT, DIGEST)
    assert len(heads) == 2 and heads[1] != heads[0] == hung_on[0], heads
    assert len(lean.heads) == (2 if transport == "lean" else 0)
    assert [str(w.message) for w in caught] == []
    assert loop_errors == []


@pytest.mark.parametrize("transport", ["aiohttp", "lean"])
def test_a_kept_alive_connection_the_server_closes_is_the_same_answer(transport: str) -> None:
    """The server closes a kept-alive connection instead of answering its second HEAD
    (an idle timeout racing the next request): aiohttp sends it again on a new
    connection, once, on either path; the metrics count one request."""
    lean = LeanCounter()
    rows: list[Row] = []
    seen_on: list[int] = []

    def respond(request: WireRequest) -> bytes | Fault:
        if request.valid and request.method == "HEAD":
            seen_on.append(request.connection)
            if seen_on.count(request.connection) == 2:
                return Fault.CLOSE
        return _basic_or_anonymous("anonymous")(request)

    with WireServer(respond) as server:
        results = run_checks(
            f"{server.host}/team/app:v1",
            3,
            transport_factory=factory(transport, lean),
            observer=lambda registry, method, code: rows.append((method, code)),
        )
    assert [(r.status, r.reason) for r in results] == [(Status.PRESENT, None)] * 3
    # Connection 1 was the HTTPS probe; /v2/ and the first HEAD share connection 2.
    assert seen_on == [2, 2, 3, 3, 4]
    assert rows == [("GET", "200")] + [("HEAD", "200")] * 3
    assert len(lean.heads) == (3 if transport == "lean" else 0)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_no_transport_sends_a_cookie_back(transport: str, names: dict[str, str]) -> None:
    """Registries authenticate by header; aiohttp's cookie jar (under httpx-aiohttp)
    kept the Set-Cookie of a named host and sent it on every later request."""

    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        cookie = {"Set-Cookie": f"sid{len(sent)}=abc; Path=/"}
        sent.append(request.headers.get("cookie"))
        if request.path == "/v2/":
            return http_answer(200, {"Content-Type": "application/json", **cookie}, b"{}")
        head = {
            "Content-Type": OCI_MANIFEST,
            "Docker-Content-Digest": DIGEST,
            "Content-Length": "2",
        }
        return http_answer(200, {**head, **cookie})

    sent: list[str | None] = []
    names["registry.test"] = "127.0.0.1"
    with WireServer(respond) as server:
        results = run_checks(
            f"registry.test:{server.port}/team/app:v1",
            2,
            transport_factory=TRANSPORTS[transport],
            settings_for=lambda host: RegistrySettings(insecure=True),  # plain HTTP
        )
    assert [r.status for r in results] == [Status.PRESENT] * 2, results
    assert sent == [None, None, None]  # /v2/ and two HEADs
