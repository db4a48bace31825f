"""RegistryClient + check_reference on the wire, against small loopback fault servers."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from support.faults import LoopbackHTTPServer, RecordedRequest, Reply, free_port

from monitor.checker import check_reference, client_from_config
from monitor.config import parse_config
from monitor.domain import CheckResult, Reason, Status
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient
from monitor.registry.transport import default_transport_factory, failure_reason

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
}
MANIFEST_PATH = "/v2/team/app/manifests/v1"
MIB = 1024 * 1024

BODY = (
    json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + "c" * 64,
                "size": 2,
            },
            "layers": [],
        },
        indent=3,
    ).encode()
    + b"\n"
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


DIGEST = sha256(BODY)


def json_reply(status: int, doc: object, *headers: tuple[str, str]) -> Reply:
    return Reply(status, [("Content-Type", "application/json"), *headers], json.dumps(doc).encode())


def errors_body(code: str, message: str) -> dict[str, object]:
    return {"errors": [{"code": code, "message": message, "detail": None}]}


class FakeRegistry(LoopbackHTTPServer):
    """``GET /v2/`` → 200 unless ``ping`` says otherwise; everything else goes to ``route``.

    Records the monotonic time of each request in ``times``.
    """

    def __init__(
        self,
        route: Callable[[RecordedRequest], Reply],
        ping: Callable[[RecordedRequest], Reply] | None = None,
    ) -> None:
        super().__init__()
        self.route = route
        self.ping = ping
        self.times: list[tuple[str, str, float]] = []

    def respond(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.times.append((request.method, request.path, time.monotonic()))
        if request.path == "/v2/":
            return self.ping(request) if self.ping else json_reply(200, {})
        return self.route(request)

    def manifest_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/manifests/" in r.path]


def run_check(
    ref: str,
    *,
    budget: float = 5.0,
    client: Callable[[], RegistryClient] = RegistryClient,
) -> CheckResult:
    async def main() -> CheckResult:
        registry_client = client()
        try:
            return await check_reference(registry_client, parse_reference(ref), budget=budget)
        finally:
            await registry_client.aclose()

    return asyncio.run(main())


def present_head(request: RecordedRequest) -> Reply:
    return Reply(
        200,
        [
            ("Content-Type", OCI_MANIFEST),
            ("Docker-Content-Digest", DIGEST),
            ("Content-Length", str(len(BODY))),
        ],
        BODY,
    )


def test_cookies_a_registry_sets_are_not_kept_or_sent_back() -> None:
    """As docker's and containerd's clients (no cookie jar): a load balancer's
    Set-Cookie on every answer is not sent back, so no jar is kept per answer."""

    def with_cookie(request: RecordedRequest) -> Reply:
        reply = present_head(request)
        reply.headers.append(("Set-Cookie", "AWSALB=sticky; Path=/"))
        return reply

    def ping(request: RecordedRequest) -> Reply:
        return json_reply(200, {}, ("Set-Cookie", "session=abc; Path=/"))

    async def main(host: str) -> list[CheckResult]:
        client = RegistryClient()
        try:
            ref = parse_reference(f"{host}/team/app:v1")
            return [await check_reference(client, ref, budget=5.0) for _ in range(3)]
        finally:
            await client.aclose()

    with FakeRegistry(with_cookie, ping) as server:
        results = asyncio.run(main(server.host))
        assert [r.status for r in results] == [Status.PRESENT] * 3
        assert [r.path for r in server.requests] == ["/v2/"] + [MANIFEST_PATH] * 3
        assert [r.headers.get("cookie") for r in server.requests] == [None] * 4


# --------------------------------------------------------------------------- digests


def test_present_with_digest_from_head() -> None:
    with FakeRegistry(present_head) as server:
        result = run_check(f"{server.host}/team/app:v1")
        assert result.status is Status.PRESENT, result
        assert result.digest == DIGEST
        assert server.counts[("HEAD", MANIFEST_PATH)] == 1
        assert server.counts[("GET", MANIFEST_PATH)] == 0


@pytest.mark.parametrize(
    "header", ["sha256:xyz", "sha256:" + "a" * 63, "md5:" + "a" * 32, "garbage"]
)
def test_invalid_digest_header_is_a_protocol_error(header: str) -> None:
    def route(request: RecordedRequest) -> Reply:
        return Reply(200, [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", header)], BODY)

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result


def test_head_without_digest_gets_and_hashes_the_exact_bytes() -> None:
    def route(request: RecordedRequest) -> Reply:
        return Reply(200, [("Content-Type", OCI_MANIFEST)], BODY)

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
        assert result.status is Status.PRESENT, result
        assert result.digest == sha256(BODY)
        assert result.digest != sha256(json.dumps(json.loads(BODY)).encode())
        assert [(r.method, r.path) for r in server.manifest_requests()] == [
            ("HEAD", MANIFEST_PATH),
            ("GET", MANIFEST_PATH),
        ]


def test_every_manifest_request_accepts_all_six_media_types() -> None:
    def route(request: RecordedRequest) -> Reply:
        return Reply(200, [("Content-Type", OCI_MANIFEST)], BODY)  # no digest: HEAD then GET

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
        requests = server.manifest_requests()
    assert result.status is Status.PRESENT
    assert len(requests) == 2
    for request in requests:
        accepted = {
            part.split(";")[0].strip()
            for value in request.headers.get_list("accept")
            for part in value.split(",")
        }
        assert SIX_TYPES <= accepted, (request.method, accepted)


def test_by_digest_reference_is_requested_by_digest_and_verified() -> None:
    wanted = "sha256:" + "a" * 64

    def route(request: RecordedRequest) -> Reply:
        return Reply(200, [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", DIGEST)])

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app@{wanted}")
        paths = {r.path for r in server.manifest_requests()}
    assert paths == {f"/v2/team/app/manifests/{wanted}"}
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result


def test_by_digest_reference_with_matching_answer_is_present() -> None:
    with FakeRegistry(present_head) as server:
        result = run_check(f"{server.host}/team/app@{DIGEST}")
    assert (result.status, result.digest) == (Status.PRESENT, DIGEST)


# --------------------------------------------------------------------------- 4xx / 5xx


def test_404_manifest_unknown_is_missing() -> None:
    def route(request: RecordedRequest) -> Reply:
        return json_reply(404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"))

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
        methods = [r.method for r in server.manifest_requests()]
    assert (result.status, result.detail) == (Status.MISSING, "manifest unknown"), result
    assert methods == ["HEAD", "GET"]  # HEAD has no body: GET tells what the 404 means


def test_404_accept_header_refused_is_a_protocol_error_not_missing() -> None:
    message = "OCI manifest found, but accept header does not support OCI manifests"

    def route(request: RecordedRequest) -> Reply:
        return json_reply(404, errors_body("MANIFEST_UNKNOWN", message))

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result


def test_404_plain_text_route_is_a_protocol_error() -> None:
    def route(request: RecordedRequest) -> Reply:
        return Reply(404, [("Content-Type", "text/plain; charset=utf-8")], b"404 page not found\n")

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result


def test_403_is_denied() -> None:
    def route(request: RecordedRequest) -> Reply:
        return json_reply(403, errors_body("DENIED", "requested access to the resource is denied"))

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
    assert result.status is Status.DENIED, result
    assert result.reason is None


@pytest.mark.parametrize("status", [500, 502])
def test_5xx_is_a_server_error_after_three_attempts(status: int) -> None:
    def route(request: RecordedRequest) -> Reply:
        return Reply(status, [("Content-Type", "text/plain")], b"boom")

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
        attempts = server.count("HEAD", "/v2/team/app/manifests/")
    assert (result.status, result.reason) == (Status.ERROR, Reason.SERVER_ERROR), result
    assert result.http_status == status
    assert attempts == 3


def test_400_name_invalid_is_a_protocol_error() -> None:
    def route(request: RecordedRequest) -> Reply:
        return json_reply(400, errors_body("NAME_INVALID", "invalid repository name"))

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1")
        attempts = server.count("HEAD", "/v2/team/app/manifests/")
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert attempts == 1  # not retried


# --------------------------------------------------------------------------- auth on the wire


def test_challenge_learned_on_the_manifest_request() -> None:
    """/v2/ says 200, the manifest says 401 Bearer: learn, fetch one token, retry once."""
    token_requests: list[RecordedRequest] = []
    holder: dict[str, str] = {}

    def route(request: RecordedRequest) -> Reply:
        if request.path == "/token":
            token_requests.append(request)
            return json_reply(200, {"token": "good", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer good":
            return present_head(request)
        challenge = (
            f'Bearer realm="{holder["url"]}/token",service="fake",scope="repository:team/app:pull"'
        )
        return json_reply(
            401,
            errors_body("UNAUTHORIZED", "authentication required"),
            ("WWW-Authenticate", challenge),
        )

    with FakeRegistry(route) as server:
        holder["url"] = server.url
        result = run_check(f"{server.host}/team/app:v1")
        heads = server.count("HEAD", MANIFEST_PATH)
        pings = server.count("GET", "/v2/")
    assert (result.status, result.digest) == (Status.PRESENT, DIGEST), result
    assert heads == 2
    assert pings == 1
    assert len(token_requests) == 1
    assert "repository:team/app:pull" in token_requests[0].query


def _invalid_token_registry(holder: dict[str, str], tokens: list[RecordedRequest]) -> FakeRegistry:
    def challenge(error: str | None) -> tuple[str, str]:
        value = f'Bearer realm="{holder["url"]}/token",service="fake"'
        if error:
            value += f',scope="repository:team/app:pull",error="{error}"'
        return ("WWW-Authenticate", value)

    def ping(request: RecordedRequest) -> Reply:
        return json_reply(401, errors_body("UNAUTHORIZED", "auth required"), challenge(None))

    def route(request: RecordedRequest) -> Reply:
        if request.path == "/token":
            tokens.append(request)
            return json_reply(200, {"token": f"tok{len(tokens)}", "expires_in": 300})
        return json_reply(
            401, errors_body("UNAUTHORIZED", "invalid token"), challenge("invalid_token")
        )

    return FakeRegistry(route, ping)


def test_invalid_token_forever_is_auth_failed_without_a_loop() -> None:
    tokens: list[RecordedRequest] = []
    holder: dict[str, str] = {}
    with _invalid_token_registry(holder, tokens) as server:
        holder["url"] = server.url
        result = run_check(f"{server.host}/team/app:v1")
        heads = server.count("HEAD", MANIFEST_PATH)
    assert (result.status, result.reason) == (Status.ERROR, Reason.AUTH_FAILED), result
    assert 1 <= len(tokens) <= 2
    assert heads <= 2


def test_invalid_token_forever_with_credentials_is_auth_failed(tmp_path: Path) -> None:
    tokens: list[RecordedRequest] = []
    holder: dict[str, str] = {}
    with _invalid_token_registry(holder, tokens) as server:
        holder["url"] = server.url
        config = parse_config(
            f"docker_config: {tmp_path / 'none.json'}\n"
            f'registries:\n  "{server.host}": {{username: ci, password: s3cret}}\n'
        )
        result = run_check(f"{server.host}/team/app:v1", client=lambda: client_from_config(config))
        heads = server.count("HEAD", MANIFEST_PATH)
    assert (result.status, result.reason) == (Status.ERROR, Reason.AUTH_FAILED), result
    assert 1 <= len(tokens) <= 2
    assert all(t.headers.get("authorization", "").startswith("Basic ") for t in tokens)
    assert heads <= 2


# --------------------------------------------------------------------------- size cap


class CountingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, owner: CountingTransport) -> None:
        self.inner = inner
        self.owner = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.owner.bytes_read += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps the default transport and counts body bytes handed to the client."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.bytes_read = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=CountingStream(response.stream, self),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class RawServer(LoopbackHTTPServer):
    """A LoopbackHTTPServer whose ``handle(h)`` writes the answer's bytes itself: a body of
    unknown length, a malformed answer. ``bytes_sent`` counts what ``sent()`` is told."""

    def __init__(
        self, handle: Callable[[BaseHTTPRequestHandler], None], address: str = "127.0.0.1"
    ) -> None:
        super().__init__(address=address)
        self.handle = handle
        self.bytes_sent = 0

    def _answer(self, h: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        try:
            self.handle(h)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should when it stops reading
        h.close_connection = True

    def sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n


def send_simple(h: BaseHTTPRequestHandler, reply: Reply) -> None:
    h.send_response(reply.status)
    for name, value in reply.headers:
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(reply.body)))
    h.send_header("Connection", "close")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(reply.body)


def huge_manifest_server(*, chunked: bool) -> RawServer:
    """HEAD 200 without digest; GET streams a 64 MiB 'manifest' (chunked or with a length)."""
    total = 64 * MIB
    piece = b" " * (64 * 1024)

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.path == "/v2/":
            send_simple(h, json_reply(200, {}))
            return
        h.send_response(200)
        h.send_header("Content-Type", OCI_MANIFEST)
        h.send_header("Connection", "close")
        if h.command == "HEAD":
            h.send_header("Content-Length", str(total))
            h.end_headers()
            return
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(total))
        h.end_headers()
        for i in range(total // len(piece)):
            data = (b"{" + piece[1:]) if i == 0 else piece
            if chunked:
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                h.wfile.write(data)
            owner.sent(len(data))
        if chunked:
            h.wfile.write(b"0\r\n\r\n")

    owner = RawServer(handle)
    return owner


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
def test_manifest_over_4_mib_is_a_protocol_error(chunked: bool) -> None:
    transports: list[CountingTransport] = []

    def factory(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
        transports.append(CountingTransport(default_transport_factory(verify)))
        return transports[-1]

    with huge_manifest_server(chunked=chunked) as server:
        result = run_check(
            f"{server.host}/team/app:v1", client=lambda: RegistryClient(transport_factory=factory)
        )
        gets = [r for r in server.requests if r.method == "GET" and "/manifests/" in r.path]
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert len(gets) == 1
    read = sum(t.bytes_read for t in transports)
    assert read <= 4 * MIB + 64 * 1024, read


NO_DIGEST_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


@pytest.mark.parametrize(
    ("head", "get"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nBroken header line\r\n\r\n", b""),
        (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", b""),
        (
            NO_DIGEST_HEAD,
            b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        ),
    ],
    ids=["bad-header", "bad-status", "bad-chunk-on-get"],
)
def test_malformed_http_answer_is_a_protocol_error_not_a_crash(head: bytes, get: bytes) -> None:
    """SPEC §2: a malformed answer is error/protocol; check_reference never raises."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.path == "/v2/":
            send_simple(h, json_reply(200, {}))
            return
        h.wfile.write(head if h.command == "HEAD" else get)
        h.wfile.flush()

    with RawServer(handle) as server:
        result = run_check(f"{server.host}/team/app:v1")
    assert result.status is Status.ERROR, result
    assert result.reason is Reason.PROTOCOL, result


# --------------------------------------------------------------------------- redirects


def test_redirect_to_another_origin_does_not_carry_credentials(tmp_path: Path) -> None:
    def b_handle(h: BaseHTTPRequestHandler) -> None:
        send_simple(
            h,
            Reply(200, [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", DIGEST)], BODY),
        )

    with RawServer(b_handle, address="127.0.0.2") as server_b:
        location = f"http://{server_b.host}{MANIFEST_PATH}"

        def ping(request: RecordedRequest) -> Reply:
            if request.headers.get("authorization", "").startswith("Basic "):
                return json_reply(200, {})
            return json_reply(
                401, errors_body("UNAUTHORIZED", "auth"), ("WWW-Authenticate", 'Basic realm="a"')
            )

        def route(request: RecordedRequest) -> Reply:
            if not request.headers.get("authorization", "").startswith("Basic "):
                return json_reply(
                    401,
                    errors_body("UNAUTHORIZED", "auth"),
                    ("WWW-Authenticate", 'Basic realm="a"'),
                )
            return Reply(307, [("Location", location), ("Content-Length", "0")])

        with FakeRegistry(route, ping) as server_a:
            config = parse_config(
                f"docker_config: {tmp_path / 'none.json'}\n"
                f'registries:\n  "{server_a.host}": {{username: ci, password: s3cret}}\n'
            )
            result = run_check(
                f"{server_a.host}/team/app:v1", client=lambda: client_from_config(config)
            )
            a_manifest = server_a.manifest_requests()
        b_requests = list(server_b.requests)

    assert (result.status, result.digest) == (Status.PRESENT, DIGEST), result
    assert a_manifest, "A never got the manifest request"
    assert all(r.headers.get("authorization", "").startswith("Basic ") for r in a_manifest)
    assert b_requests, "the redirect was not followed"
    assert all("authorization" not in r.headers for r in b_requests), b_requests


# --------------------------------------------------------------------------- 429


def test_retry_after_is_honoured() -> None:
    def route(request: RecordedRequest) -> Reply:
        if server.count("HEAD", MANIFEST_PATH) == 1:
            return json_reply(
                429, errors_body("TOOMANYREQUESTS", "slow down"), ("Retry-After", "1")
            )
        return present_head(request)

    with FakeRegistry(route) as server:
        result = run_check(f"{server.host}/team/app:v1", budget=5.0)
        heads = [t for m, p, t in server.times if m == "HEAD" and p == MANIFEST_PATH]
    assert (result.status, result.digest) == (Status.PRESENT, DIGEST), result
    assert len(heads) == 2
    assert heads[1] - heads[0] >= 1.0, heads


def test_429_forever_is_rate_limited_not_timeout() -> None:
    def route(request: RecordedRequest) -> Reply:
        return json_reply(429, errors_body("TOOMANYREQUESTS", "slow down"), ("Retry-After", "1"))

    with FakeRegistry(route) as server:
        started = time.monotonic()
        result = run_check(f"{server.host}/team/app:v1", budget=2.5)
        elapsed = time.monotonic() - started
        heads = [t for m, p, t in server.times if m == "HEAD" and p == MANIFEST_PATH]
    assert (result.status, result.reason) == (Status.ERROR, Reason.RATE_LIMITED), result
    assert elapsed < 4.0
    assert 2 <= len(heads) <= 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(heads)), heads


# --------------------------------------------------------------------------- transport failures


def test_connection_refused_is_unreachable() -> None:
    result = run_check(f"127.0.0.1:{free_port()}/team/app:v1", budget=5.0)
    assert (result.status, result.reason) == (Status.ERROR, Reason.UNREACHABLE), result


def _caused_by(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        raise outer from inner
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (_caused_by(httpx.ConnectError("x"), ssl.SSLError(1, "wrong version")), Reason.TLS),
        (
            _caused_by(
                httpx.ConnectError("x"),
                ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            Reason.TLS,
        ),
        (
            _caused_by(httpx.ConnectError("x"), ConnectionRefusedError(111, "refused")),
            Reason.UNREACHABLE,
        ),
        (httpx.ReadTimeout("read timed out"), Reason.TIMEOUT),
        (httpx.ConnectTimeout("connect timed out"), Reason.TIMEOUT),
        (_caused_by(httpx.TimeoutException("x"), TimeoutError()), Reason.TIMEOUT),
        (httpx.RemoteProtocolError("bad status line"), Reason.PROTOCOL),
    ],
    ids=[
        "ssl-error",
        "cert-verify",
        "refused",
        "read-timeout",
        "connect-timeout",
        "chained",
        "proto",
    ],
)
def test_failure_reason(exc: BaseException, reason: Reason) -> None:
    assert failure_reason(exc) is reason
