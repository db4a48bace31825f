"""The one capped body reader, and config blobs that are not what they claim."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from support.faults import LoopbackHTTPServer, RecordedRequest, Reply, status_server
from support.hostile import MIB, gzip_bomb

from monitor.checker import check_reference
from monitor.domain import CheckResult, Reason, Status
from monitor.errors import RegistryError
from monitor.reference import parse_reference
from monitor.registry.bodies import read_body
from monitor.registry.client import RegistryClient

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def read(body: bytes, limit: int, encoding: str | None = None, **kw: bool) -> bytes:
    headers = {"Content-Encoding": encoding} if encoding else {}
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]
    response = httpx.Response(200, headers=headers, stream=Chunks(pieces))
    return asyncio.run(read_body(response, limit, "thing", **kw))


PAYLOAD = json.dumps({"token": "x" * 5000}).encode()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (None, PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD, wbits=-15)),  # raw deflate, as some servers send
        ("identity", PAYLOAD),
    ],
    ids=["identity-implicit", "gzip", "x-gzip", "deflate-zlib", "deflate-raw", "identity"],
)
def test_decodes_what_it_accepts(encoding: str | None, encoded: bytes) -> None:
    assert read(encoded, len(PAYLOAD), encoding) == PAYLOAD  # exactly at the cap is fine
    with pytest.raises(RegistryError) as info:
        read(encoded, len(PAYLOAD) - 1, encoding)
    assert info.value.reason is Reason.PROTOCOL
    assert str(info.value) == f"thing is larger than {len(PAYLOAD) - 1} bytes"


def test_truncate_returns_the_beginning() -> None:
    assert read(gzip.compress(PAYLOAD), 100, "gzip", truncate=True) == PAYLOAD[:100]


def test_a_gzip_bomb_is_stopped_at_the_cap_with_bounded_memory() -> None:
    bomb = gzip_bomb(256 * MIB)
    tracemalloc.start()
    try:
        with pytest.raises(RegistryError, match="larger than 1 MiB"):
            read(bomb, MIB, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB, peak


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("br", b"x", "thing has an unsupported Content-Encoding 'br'"),
        ("gzip, gzip", b"x", "thing has an unsupported Content-Encoding 'gzip, gzip'"),
        ("gzip", b"not gzip at all", "thing is not valid gzip/deflate"),
    ],
)
def test_refuses_what_it_cannot_decode(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        read(body, MIB, encoding)
    assert (info.value.reason, str(info.value)) == (Reason.PROTOCOL, message)


# --- a manifest bomb through the client, and config blobs that lie ------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobRegistry(LoopbackHTTPServer):
    """One single-arch image; the config blob answer is ``blob(request)``."""

    def __init__(self, config: bytes, blob: Callable[[bytes], Reply], size: int | None = None):
        super().__init__()
        self.config = config
        self.blob = blob
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256(config),
                "size": len(config) if size is None else size,
            },
            "layers": [],
        }
        self.manifest = json.dumps(doc).encode()

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        if "/manifests/" in request.path:
            headers = [
                ("Content-Type", OCI_MANIFEST),
                ("Docker-Content-Digest", sha256(self.manifest)),
            ]
            return Reply(200, headers, self.manifest)
        return self.blob(self.config)


def check(host: str, platform: str = "linux/amd64") -> CheckResult:
    async def main() -> CheckResult:
        async with RegistryClient() as client:
            ref = parse_reference(f"{host}/team/app:v1")
            return await check_reference(client, ref, platforms=[platform], budget=5)

    return asyncio.run(main())


AMD64 = json.dumps({"os": "linux", "architecture": "amd64"}).encode()


def test_a_config_blob_is_verified_and_fetched_once() -> None:
    with BlobRegistry(AMD64, lambda config: Reply(200, [], config)) as server:
        result = check(server.host)
        blobs = server.count("GET", "/v2/team/app/blobs/")
    assert result.status is Status.PRESENT, result
    assert blobs == 1


@pytest.mark.parametrize(
    ("blob", "size", "reason", "detail"),
    [
        (lambda c: Reply(200, [], c + b" "), None, Reason.PROTOCOL, "config blob does not hash to"),
        (lambda c: Reply(404, [], b""), None, Reason.PROTOCOL, "answered HTTP 404 for config blob"),
        (lambda c: Reply(503, [], b""), None, Reason.SERVER_ERROR, "answered HTTP 503 for config"),
        (
            lambda c: Reply(200, [], b"x" * (MIB + 1)),
            None,
            Reason.PROTOCOL,
            "config blob is larger",
        ),
        (lambda c: Reply(200, [], c), 2 * MIB, Reason.PROTOCOL, "is larger than 1 MiB"),
    ],
    ids=["wrong-bytes", "404", "503", "too-large", "declared-too-large"],
)
def test_a_config_blob_that_is_not_evidence_is_an_error_never_missing(
    blob: Callable[[bytes], Reply], size: int | None, reason: Reason, detail: str
) -> None:
    with BlobRegistry(AMD64, blob, size) as server:
        result = check(server.host)
    assert (result.status, result.reason) == (Status.ERROR, reason), result
    assert detail in (result.detail or ""), result.detail


def test_a_config_blob_that_is_not_json_is_a_protocol_error() -> None:
    with BlobRegistry(b"[" * 1000, lambda c: Reply(200, [], c)) as server:
        host = server.host
        result = check(host)
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert result.detail == f"{host}: image config is not JSON"


def test_a_manifest_gzip_bomb_stops_at_4_mib() -> None:
    bomb = gzip_bomb(256 * MIB)

    class Bomb(LoopbackHTTPServer):
        def respond(self, request: RecordedRequest) -> Reply:
            if request.path == "/v2/":
                return Reply(200, [], b"{}")
            headers = [("Content-Type", OCI_MANIFEST), ("Content-Encoding", "gzip")]
            return Reply(200, headers, bomb)  # HEAD without a digest: the GET reads this

    with Bomb() as server:
        tracemalloc.start()
        try:
            result = check(server.host)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (result.status, result.reason) == (Status.ERROR, Reason.PROTOCOL), result
    assert result.detail == "manifest is larger than 4 MiB"
    assert peak < 16 * MIB, peak


def test_a_tags_list_page_goes_through_the_same_cap() -> None:
    bomb = gzip_bomb(64 * MIB)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with status_server(200, headers, bomb) as server:

        async def main() -> None:
            async with RegistryClient() as client:
                await client.list_tags(parse_reference(f"{server.host}/team/app"))

        with pytest.raises(RegistryError) as caught:
            asyncio.run(main())
    assert (caught.value.reason, str(caught.value)) == (
        Reason.PROTOCOL,
        "tags/list page is larger than 4 MiB",
    )


def test_a_deeply_nested_tags_list_page_is_not_json() -> None:
    with status_server(200, {"Content-Type": "application/json"}, b"[" * 100_000) as server:
        host = server.host

        async def main() -> None:
            async with RegistryClient() as client:
                await client.list_tags(parse_reference(f"{host}/team/app"))

        with pytest.raises(RegistryError) as caught:
            asyncio.run(main())
    assert str(caught.value) == f"{host}: tags/list answer is not JSON"


def test_schema1_states_its_architecture_without_a_blob_request() -> None:
    compat = json.dumps({"os": "linux", "architecture": "arm", "variant": "v6"})
    body = json.dumps(
        {
            "schemaVersion": 1,
            "name": "team/app",
            "tag": "v1",
            "architecture": "arm",
            "fsLayers": [],
            "history": [{"v1Compatibility": compat}],
        }
    ).encode()
    media_type = "application/vnd.docker.distribution.manifest.v1+json"

    class Schema1(LoopbackHTTPServer):
        def respond(self, request: RecordedRequest) -> Reply:
            if request.path == "/v2/":
                return Reply(200, [], b"{}")
            headers = [("Content-Type", media_type), ("Docker-Content-Digest", sha256(body))]
            return Reply(200, headers, body)

    with Schema1() as server:
        v6 = check(server.host, "linux/arm/v6")
        v7 = check(server.host, "linux/arm/v7")
        blobs = server.count("GET", "/v2/team/app/blobs/")
    assert (v6.status, v6.platforms) == (Status.PRESENT, {"linux/arm/v6": sha256(body)})
    assert (v7.status, v7.detail) == (Status.MISSING, "no linux/arm/v7 manifest")
    assert blobs == 0
