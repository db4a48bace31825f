"""Registry answers decided by what they say, hosts as written, redirects, and registry
text made safe: against go-containerregistry's answers (GgcrRegistry) and raw servers,
through both transports where the transport matters."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support.faults import (
    Fault,
    GgcrRegistry,
    LoopbackHTTPServer,
    RecordedRequest,
    Reply,
    WireRequest,
    WireServer,
    bad_request,
    http_answer,
    resolve_names,
)
from support.service import RegmonProcess
from support.transports import TRANSPORTS
from support.wait import wait_for

from monitor.checker import check_reference
from monitor.domain import CheckResult, Reason, Status
from monitor.reference import parse_reference
from monitor.registry.classify import media_type, parse_error_body
from monitor.registry.client import RegistryClient, RegistrySettings
from monitor.registry.transport import TransportFactory
from monitor.text import clean

both_transports = pytest.mark.parametrize("transport", list(TRANSPORTS), ids=list(TRANSPORTS))

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SNIFFED = "text/plain; charset=utf-8"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_body(seed: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(seed.encode()),
                "size": len(seed),
            },
            "layers": [],
        }
    ).encode()


AMD64 = manifest_body("amd64")
ARM64 = manifest_body("arm64")
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(body),
                "size": len(body),
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch, body in (("amd64", AMD64), ("arm64", ARM64))
        ],
    }
).encode()


def run(
    ref: str,
    *,
    transport: TransportFactory | None = None,
    platforms: Sequence[str] = (),
    settings: RegistrySettings | None = None,
    client: RegistryClient | None = None,
) -> CheckResult:
    async def main() -> CheckResult:
        async with client or RegistryClient(
            transport_factory=transport,
            settings_for=lambda host: settings or RegistrySettings(timeout=2.0),
        ) as registry_client:
            return await check_reference(
                registry_client, parse_reference(ref), platforms=platforms, budget=8.0
            )

    return asyncio.run(main())


def manifest_requests(server: LoopbackHTTPServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests if "/manifests/" in r.path]


@pytest.fixture
def ggcr() -> Iterator[GgcrRegistry]:
    with GgcrRegistry() as server:
        server.put("team/app", "v1", AMD64, OCI_MANIFEST)
        yield server


# --------------------------------------------------------------------------- go-containerregistry


def test_ggcr_server_answers_as_go_containerregistry_does(ggcr: GgcrRegistry) -> None:
    """The fault server itself: JSON errors labelled text/plain by Go's sniffing."""
    import httpx

    with httpx.Client(base_url=f"http://{ggcr.host}") as http:
        ping = http.get("/v2/")
        head = http.head("/v2/team/app/manifests/nope")
        get = http.get("/v2/team/absent/manifests/v1")
        tags = http.get("/v2/team/app/tags/list")
        route = http.get("/v2/team/app/nothing/here")
    assert (ping.status_code, ping.headers["docker-distribution-api-version"]) == (
        200,
        "registry/2.0",
    )
    assert ping.content == b""
    assert (head.status_code, head.headers["content-type"], head.content) == (404, SNIFFED, b"")
    assert head.headers["content-length"] == str(
        len(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"Unknown manifest"}]}\n')
    )
    assert (get.status_code, get.headers["content-type"]) == (404, SNIFFED)
    assert get.content == b'{"errors":[{"code":"NAME_UNKNOWN","message":"Unknown name"}]}\n'
    assert (tags.headers["content-type"], tags.json()) == (
        SNIFFED,
        {"name": "team/app", "tags": ["v1"]},
    )
    assert route.status_code == 404
    assert route.json()["errors"][0]["code"] == "METHOD_UNKNOWN"


@both_transports
def test_ggcr_missing_tag_repository_and_digest_are_missing(
    ggcr: GgcrRegistry, transport: str
) -> None:
    host = ggcr.host
    cases = {
        f"{host}/team/app:v1": (Status.PRESENT, None),
        f"{host}/team/app:nope": (Status.MISSING, "manifest unknown"),
        f"{host}/team/absent:v1": (Status.MISSING, "name unknown"),
        f"{host}/team/app@{sha256(b'other')}": (Status.MISSING, "manifest unknown"),
    }
    for ref, (status, detail) in cases.items():
        ggcr.reset()
        result = run(ref, transport=TRANSPORTS[transport])
        assert (result.status, result.reason, result.detail) == (status, None, detail), result
        if status is Status.PRESENT:
            assert (result.digest, result.media_type) == (sha256(AMD64), OCI_MANIFEST)
            assert manifest_requests(ggcr) == [("HEAD", "/v2/team/app/manifests/v1")]
        else:
            # HEAD has no body: one GET reads what the 404 says.
            assert [m for m, _ in manifest_requests(ggcr)] == ["HEAD", "GET"], ggcr.requests


def test_ggcr_get_only_registry_missing_is_missing(ggcr: GgcrRegistry) -> None:
    result = run(
        f"{ggcr.host}/team/app:nope", settings=RegistrySettings(manifest_method="get", timeout=2)
    )
    assert (result.status, result.detail) == (Status.MISSING, "manifest unknown"), result
    assert [m for m, _ in manifest_requests(ggcr)] == ["GET"]


@pytest.mark.parametrize(
    "label",
    ["text/plain; charset=utf-8", "application/octet-stream", "<script>alert(1)</script>", ""],
    ids=["sniffed-text", "octet-stream", "markup", "empty"],
)
@both_transports
def test_a_manifest_type_the_label_does_not_name_comes_from_the_body(
    ggcr: GgcrRegistry, label: str, transport: str
) -> None:
    ggcr.put("team/multi", "v1", INDEX, label)
    ggcr.put("team/multi", sha256(AMD64), AMD64, label)
    ggcr.put("team/multi", sha256(ARM64), ARM64, label)
    result = run(
        f"{ggcr.host}/team/multi:v1", transport=TRANSPORTS[transport], platforms=["linux/arm64"]
    )
    assert result.status is Status.PRESENT, result
    assert (result.digest, result.media_type) == (sha256(INDEX), OCI_INDEX)
    assert dict(result.platforms) == {"linux/arm64": sha256(ARM64)}
    # A platform check whose digest this process does not know yet GETs the tag once:
    # the body is the evidence, and its own mediaType names the index.
    assert manifest_requests(ggcr) == [("GET", "/v2/team/multi/manifests/v1")]


def test_a_markup_content_type_is_never_stored_as_media_type(ggcr: GgcrRegistry) -> None:
    ggcr.put("team/odd", "v1", AMD64, "<script>alert(1)</script>")
    result = run(f"{ggcr.host}/team/odd:v1")
    assert (result.status, result.digest, result.media_type) == (
        Status.PRESENT,
        sha256(AMD64),
        OCI_MANIFEST,
    )


def regmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test", **(env or {})}
    full_env.pop("DOCKER_AUTH_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_regmon_check_against_ggcr(ggcr: GgcrRegistry) -> None:
    refs = [
        f"{ggcr.host}/team/app:v1",
        f"{ggcr.host}/team/app:nope",
        f"{ggcr.host}/team/absent:v1",
        f"{ggcr.host}/team/app@{sha256(b'other')}",
    ]
    proc = regmon("check", *refs)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [line.split() for line in proc.stdout.splitlines()] == [
        ["present", refs[0], sha256(AMD64)],
        ["missing", refs[1], "manifest", "unknown"],
        ["missing", refs[2], "name", "unknown"],
        ["missing", refs[3], "manifest", "unknown"],
    ]


def test_a_deleted_tag_on_ggcr_is_tag_missing_not_check_failing(
    ggcr: GgcrRegistry, tmp_path: Path
) -> None:
    ref = f"{ggcr.host}/team/app:v1"
    config = (
        "defaults: {interval: 1s, jitter: 0%, missing_after: 2, failing_after: 2}\n"
        f"watch:\n  - image: {ref}\n"
    )
    with RegmonProcess(config, tmp_path / "svc") as svc:

        def image() -> dict[str, Any] | None:
            return svc.images().get(ref)

        wait_for(
            lambda: (image() or {}).get("status") == "present",
            timeout=15,
            message=f"present\n{svc.log_tail()}",
        )
        ggcr.delete("team/app", "v1")
        wait_for(
            lambda: [e for e in svc.events(image=ref) if e["type"] == "tag.missing"],
            timeout=15,
            message=f"tag.missing\n{svc.log_tail()}",
        )
        kinds = [e["type"] for e in svc.events(image=ref)]
        state = image()
    assert kinds == ["tag.missing"], kinds
    assert state is not None
    assert (state["status"], state["detail"]) == ("missing", "manifest unknown"), state


class ErrorServer(LoopbackHTTPServer):
    """``reply`` to every manifest request; with ``head_ok`` a HEAD gets 200 without a
    digest instead, so the GET that follows gets ``reply`` and its body is read."""

    def __init__(self, reply: Reply, *, head_ok: bool = False) -> None:
        super().__init__()
        self.reply = reply
        self.head_ok = head_ok

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        if self.head_ok and request.method == "HEAD":
            return Reply(200, [("Content-Type", OCI_MANIFEST)])
        return self.reply


def test_a_404_that_is_not_a_registry_error_is_protocol_whatever_its_label() -> None:
    """distribution's route miss is the text ``404 page not found``; a proxy's page may
    be labelled JSON. Only an ``errors[]`` document is the registry speaking."""
    for label, body in (
        ("text/plain; charset=utf-8", b"404 page not found\n"),
        ("application/json", b"<html><body>Not Found</body></html>"),
        ("application/json", b'{"message": "not found"}'),
    ):
        with ErrorServer(Reply(404, [("Content-Type", label)], body)) as server:
            result = run(f"{server.host}/team/app:v1")
        assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), (body, result)


class PushedBetweenServer(LoopbackHTTPServer):
    """A tag pushed between a check's HEAD and its GET: the HEAD finds nothing (404, no
    body, as a HEAD is), the GET that asks what the 404 meant finds the manifest."""

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        if request.method == "HEAD":
            return Reply(404, [("Content-Type", "application/json")])
        headers = [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", sha256(AMD64))]
        return Reply(200, headers, AMD64)


@both_transports
def test_a_tag_pushed_between_the_head_and_the_get_is_present(transport: str) -> None:
    """Seen in the suite: a push racing a check made it ``protocol: HEAD said 404, GET
    said 200`` and counted towards check.failing. The later answer stands, from the
    GET's own body: no third request."""
    with PushedBetweenServer() as server:
        result = run(f"{server.host}/team/app:v1", transport=TRANSPORTS[transport])
        asked = manifest_requests(server)
    assert (result.status, result.digest) == (Status.PRESENT, sha256(AMD64)), result
    path = "/v2/team/app/manifests/v1"
    assert asked == [("HEAD", path), ("GET", path)]


# --------------------------------------------------------------------------- hosts as written


@both_transports
def test_a_punycode_host_is_requested_as_written(ggcr: GgcrRegistry, transport: str) -> None:
    """``xn--n3h.com`` (distribution/reference's own test host) decodes to a label IDNA
    2008 disallows; httpx refused it before any request ("unexpected InvalidCodepoint")."""
    ggcr.put("foo", "bar", AMD64, OCI_MANIFEST)
    with resolve_names({"xn--n3h.com": "127.0.0.1"}):
        result = run(
            f"xn--n3h.com:{ggcr.port}/foo:bar",
            transport=TRANSPORTS[transport],
            settings=RegistrySettings(insecure=True, timeout=2),  # plain HTTP on loopback
        )
    assert (result.status, result.digest) == (Status.PRESENT, sha256(AMD64)), result
    manifest = [r for r in ggcr.requests if "/manifests/" in r.path]
    assert [r.headers["host"] for r in manifest] == [f"xn--n3h.com:{ggcr.port}"]


class PunycodeRealmRegistry(LoopbackHTTPServer):
    """A token-auth registry whose realm is on ``xn--n3h.com`` (this same server)."""

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/token":
            return Reply(200, [("Content-Type", "application/json")], b'{"token": "t0k"}')
        if request.headers.get("authorization") != "Bearer t0k":
            realm = f"http://xn--n3h.com:{self.port}/token"
            challenge = f'Bearer realm="{realm}",service="reg",scope="repository:foo:pull"'
            return Reply(
                401,
                [("Content-Type", "application/json"), ("WWW-Authenticate", challenge)],
                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            )
        digest = [("Docker-Content-Digest", sha256(AMD64)), ("Content-Type", OCI_MANIFEST)]
        return Reply(200, digest, AMD64)


@both_transports
def test_a_token_realm_on_a_punycode_host_is_asked_as_written(transport: str) -> None:
    with resolve_names({"xn--n3h.com": "127.0.0.1"}), PunycodeRealmRegistry() as server:
        result = run(f"{server.host}/foo:bar", transport=TRANSPORTS[transport])
        tokens = [r for r in server.requests if r.path == "/token"]
        port = server.port
    assert (result.status, result.digest) == (Status.PRESENT, sha256(AMD64)), result
    assert [r.headers["host"] for r in tokens] == [f"xn--n3h.com:{port}"]


# --------------------------------------------------------------------------- redirects

PING = http_answer(200, {"Content-Type": "application/json"}, b"{}")
PRESENT = http_answer(
    200,
    {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(AMD64), "Content-Length": "0"},
)


def redirecting(route: Callable[[WireRequest], bytes]) -> Callable[[WireRequest], bytes | Fault]:
    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        if request.path == "/v2/":
            return PING
        return route(request)

    return respond


@both_transports
def test_a_redirected_head_stays_a_bodiless_head_on_a_kept_alive_connection(
    transport: str,
) -> None:
    """After a redirect the aiohttp transport sent the HEAD with Transfer-Encoding:
    chunked and a ``0\\r\\n\\r\\n`` body; a server that reads no body on HEAD then
    parsed those bytes as the next request and every later check failed."""

    def route(request: WireRequest) -> bytes:
        if request.path == "/v2/team/app/manifests/v1":
            return http_answer(307, {"Location": "/storage/manifest"})
        return PRESENT if request.path == "/storage/manifest" else http_answer(404)

    with WireServer(redirecting(route)) as server:

        async def main() -> list[CheckResult]:
            async with RegistryClient(transport_factory=TRANSPORTS[transport]) as client:
                ref = parse_reference(f"{server.host}/team/app:v1")
                return [await check_reference(client, ref, budget=5.0) for _ in range(3)]

        results = asyncio.run(main())
        requests = [r for r in server.requests if r.valid or r.connection > 1]
    assert [(r.status, r.digest) for r in results] == [(Status.PRESENT, sha256(AMD64))] * 3
    assert all(r.valid for r in requests), [r.line for r in requests]
    assert [(r.method, r.path) for r in requests] == [("GET", "/v2/")] + [
        ("HEAD", "/v2/team/app/manifests/v1"),
        ("HEAD", "/storage/manifest"),
    ] * 3
    for request in requests:
        assert "transfer-encoding" not in request.headers, request
        assert request.headers.get("content-length", "0") == "0", request


@both_transports
@pytest.mark.parametrize("loop", ["self", "ping-pong"])
def test_a_redirect_loop_is_protocol_at_once_not_retried(transport: str, loop: str) -> None:
    def route(request: WireRequest) -> bytes:
        if loop == "self" or request.path == "/v2/team/app/manifests/v1":
            target = "/v2/team/app/manifests/v1" if loop == "self" else "/elsewhere"
        else:
            target = "/v2/team/app/manifests/v1"
        return http_answer(302, {"Location": target})

    with WireServer(redirecting(route)) as server:
        host = server.host
        result = run(f"{host}/team/app:v1", transport=TRANSPORTS[transport])
        heads = [r for r in server.requests if r.method == "HEAD"]
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert result.detail == f"{host}: more than 5 redirects"
    assert len(heads) == 6  # the request and five redirects, once: a loop is not retried


@both_transports
def test_redirects_within_the_bound_are_followed(transport: str) -> None:
    def route(request: WireRequest) -> bytes:
        if request.path == "/v2/team/app/manifests/v1":
            return http_answer(301, {"Location": "/hop/1"})
        hop = int(request.path.rsplit("/", 1)[1])
        return PRESENT if hop == 5 else http_answer(302, {"Location": f"/hop/{hop + 1}"})

    with WireServer(redirecting(route)) as server:
        result = run(f"{server.host}/team/app:v1", transport=TRANSPORTS[transport])
        heads = [r.path for r in server.requests if r.method == "HEAD"]
    assert (result.status, result.digest) == (Status.PRESENT, sha256(AMD64)), result
    assert heads == ["/v2/team/app/manifests/v1", *(f"/hop/{n}" for n in range(1, 6))]


# --------------------------------------------------------------------------- registry text

FORGED = "X" * 3000 + "\n\x1b[32mpresent  example.com/team/app:v1  sha256:" + "a" * 64 + "\x1b[0m"


def _is_clean_line(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def test_registry_error_code_is_one_bounded_printable_line() -> None:
    body = json.dumps({"errors": [{"code": FORGED, "message": FORGED}]}).encode()
    reply = Reply(400, [("Content-Type", "application/json")], body)
    with ErrorServer(reply, head_ok=True) as server:
        host = server.host
        ref = f"{host}/team/app:v1"
        result = run(ref)
        proc = regmon("check", ref)
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert result.detail is not None
    assert _is_clean_line(result.detail), result.detail
    assert len(result.detail) <= 100, result.detail
    assert result.detail.startswith(f"{host} answered HTTP 400 XXXX")
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == [f"error    {ref}  protocol"], proc.stdout
    assert proc.stderr.splitlines() == [f"regmon: {ref}: {result.detail}"], proc.stderr


def test_challenge_realm_text_is_bounded() -> None:
    # A header cannot carry a newline or ESC, but it can carry C1 controls such as
    # U+009B, the 8-bit CSI that some terminals obey like ESC [.
    realm = "ftp://" + "A" * 3000 + "\x9b2J forged"
    reply = Reply(
        401,
        [("Content-Type", "application/json"), ("WWW-Authenticate", f'Bearer realm="{realm}"')],
        b'{"errors":[{"code":"UNAUTHORIZED"}]}',
    )
    with ErrorServer(reply) as server:
        result = run(f"{server.host}/team/app:v1")
    assert result.status is Status.ERROR, result
    assert result.detail is not None
    assert _is_clean_line(result.detail), result.detail
    assert len(result.detail) <= 200, result.detail
    assert "bearer challenge has no usable realm (ftp://AAAA" in result.detail


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("manifest unknown", 200, "manifest unknown"),
        ("a\nb\r\n\tc", 200, "a b c"),
        ("\x1b[31mred\x1b[0m", 200, "\\x1b[31mred\\x1b[0m"),
        ("nul\x00byte", 200, "nul\\x00byte"),
        ("bidi \u202eevil", 200, "bidi \\u202eevil"),
        ("  padded  ", 200, "padded"),
        ("é ok", 200, "é ok"),
        ("x" * 300, 10, "x" * 9 + "…"),
        ("abc\x1b", 4, "abc…"),
        (b"bytes\xff", 200, "bytes\ufffd"),
    ],
)
def test_clean(text: str | bytes, limit: int, expected: str) -> None:
    assert clean(text, limit=limit) == expected
    assert len(clean(text, limit=limit)) <= limit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (OCI_MANIFEST, OCI_MANIFEST),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("<script>alert(1)</script>", None),
        ("text/plain\x1b[2J", None),
        ("no-slash", None),
        ("a/b/c", None),
        ("", None),
        (None, None),
        ("application/" + "x" * 200, None),
    ],
)
def test_media_type(value: str | None, expected: str | None) -> None:
    assert media_type(value) == expected


def test_error_body_is_decided_by_its_content() -> None:
    ggcr_body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"Unknown manifest"}]}\n'
    assert parse_error_body(ggcr_body).codes == ("MANIFEST_UNKNOWN",)
    assert parse_error_body(ggcr_body).registry
    assert not parse_error_body(b"404 page not found\n").registry
    assert parse_error_body(b"").empty
    assert not parse_error_body(b'{"errors": []}').registry
    assert not parse_error_body(b'{"errors": "x"}').registry
    assert not parse_error_body(b"[1, 2]").registry
