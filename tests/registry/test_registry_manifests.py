"""monitor.registry.manifests: digests over exact bytes, parsing, platforms (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from monitor.registry.manifests import (
    ACCEPT_HEADER,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    SCHEMA1_SIGNED,
    ManifestFormatError,
    compute_digest,
    parse_manifest,
)
from monitor.registry.platforms import (
    ConfigRef,
    IndexEntry,
    Platform,
    config_platform,
    image_config,
    index_entries,
    schema1_platform,
    select_platforms,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


MANIFEST = {
    "schemaVersion": 2,
    "mediaType": DOCKER_MANIFEST,
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7},
    "layers": [],
}

# --------------------------------------------------------------------------- digests


def test_digest_is_over_the_exact_bytes() -> None:
    pretty = json.dumps(MANIFEST, indent=3).encode()
    compact = json.dumps(MANIFEST, separators=(",", ":")).encode()
    assert compute_digest(pretty, DOCKER_MANIFEST) == sha256(pretty)
    assert compute_digest(pretty, DOCKER_MANIFEST) != sha256(compact)
    assert compute_digest(compact, OCI_MANIFEST) == sha256(compact)
    # one trailing newline is a different manifest
    assert compute_digest(pretty + b"\n", None) == sha256(pretty + b"\n")


def signed_schema1() -> tuple[bytes, bytes]:
    """A schema1 manifest signed the way docker/libtrust does it: (body, payload).

    The payload is the pretty-printed manifest. The JWS body is the payload cut
    before its closing brace, then ``"signatures": [...]``, then the cut-off
    tail; the protected header says where the cut is (formatLength) and what
    the tail was (formatTail).
    """
    manifest = {
        "schemaVersion": 1,
        "name": "team/app",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:" + "a" * 64}],
        "history": [{"v1Compatibility": '{"id":"x"}'}],
    }
    payload = json.dumps(manifest, indent=3).encode()
    format_length = payload.rindex(b"\n}")
    tail = payload[format_length:]
    protected = b64url(
        json.dumps(
            {
                "formatLength": format_length,
                "formatTail": b64url(tail),
                "time": "2024-01-01T00:00:00Z",
            }
        ).encode()
    )
    signatures = [
        {
            "header": {"jwk": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}, "alg": "ES256"},
            "signature": b64url(b"not-a-real-signature"),
            "protected": protected,
        }
    ]
    body = (
        payload[:format_length]
        + b',\n   "signatures": '
        + json.dumps(signatures, indent=3).encode()
        + tail
    )
    assert json.loads(body)["signatures"][0]["protected"] == protected
    assert body[:format_length] + tail == payload
    return body, payload


def test_signed_schema1_digest_covers_the_payload_not_the_body() -> None:
    body, payload = signed_schema1()
    assert compute_digest(body, SCHEMA1_SIGNED) == sha256(payload)
    assert compute_digest(body, SCHEMA1_SIGNED) != sha256(body)


def test_signed_schema1_digest_without_media_type() -> None:
    body, payload = signed_schema1()
    assert compute_digest(body, None) == sha256(payload)


def test_signed_schema1_without_readable_signature_is_rejected() -> None:
    body = json.dumps({"schemaVersion": 1, "signatures": [{"protected": "!!"}]}).encode()
    with pytest.raises(ManifestFormatError):
        compute_digest(body, SCHEMA1_SIGNED)


def test_signed_schema1_with_format_length_out_of_range_is_rejected() -> None:
    protected = b64url(json.dumps({"formatLength": 10_000, "formatTail": b64url(b"}")}).encode())
    body = json.dumps({"schemaVersion": 1, "signatures": [{"protected": protected}]}).encode()
    with pytest.raises(ManifestFormatError):
        compute_digest(body, SCHEMA1_SIGNED)


def test_accept_header_lists_all_six_types() -> None:
    listed = {part.strip() for part in ACCEPT_HEADER.split(",")}
    assert listed == {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    }


# --------------------------------------------------------------------------- parse_manifest


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json",
        b"",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'"schemaVersion"',
        b"null",
        b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 3}',
        b'{"schemaVersion": "2"}',
        b'{"schemaVersion": true}',
    ],
    ids=[
        "html",
        "empty",
        "not-utf8",
        "array",
        "string",
        "null",
        "no-schema-version",
        "version-3",
        "version-string",
        "version-bool",
    ],
)
def test_parse_manifest_rejects(body: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        parse_manifest(body)


@pytest.mark.parametrize("version", [1, 2])
def test_parse_manifest_accepts(version: int) -> None:
    doc = parse_manifest(json.dumps({"schemaVersion": version, "x": [1]}).encode())
    assert doc == {"schemaVersion": version, "x": [1]}


# --------------------------------------------------------------------------- platforms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/aarch64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("macos/arm64", "darwin/arm64"),
        ("Linux/AMD64", "linux/amd64"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_platform_parse_normalises(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


def test_platform_parse_fields() -> None:
    assert Platform.parse("linux/armhf") == Platform("linux", "arm", "v7")
    assert Platform.parse("linux/aarch64") == Platform("linux", "arm64", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux",
        "linux/",
        "/amd64",
        "linux//amd64",
        "linux/amd64/",
        "linux/arm/v7/x",
        "linux amd64",
    ],
)
def test_platform_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="platform"):
        Platform.parse(text)


def entry(digest: str, platform: dict[str, str] | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 100, **extra}
    if platform is not None:
        doc["platform"] = platform
    return doc


def index(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "manifests": list(entries)}


D = {name: "sha256:" + name * 64 for name in "abcdef"}


def test_select_first_match_wins() -> None:
    idx = index(
        entry(D["a"], {"os": "linux", "architecture": "amd64"}),
        entry(D["b"], {"os": "linux", "architecture": "amd64"}),
    )
    assert select_platforms(idx, ["linux/amd64"]) == {"linux/amd64": D["a"]}


def test_select_skips_attestation_entries() -> None:
    idx = index(
        entry(
            D["a"],
            {"os": "unknown", "architecture": "unknown"},
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
        ),
        entry(D["b"], {"os": "linux", "architecture": "arm64"}),
    )
    assert select_platforms(idx, ["unknown/unknown", "linux/arm64"]) == {
        "unknown/unknown": None,
        "linux/arm64": D["b"],
    }


def test_select_compares_variant_only_when_given() -> None:
    idx = index(
        entry(D["a"], {"os": "linux", "architecture": "amd64", "variant": "v3"}),
        entry(D["b"], {"os": "linux", "architecture": "arm", "variant": "v6"}),
        entry(D["c"], {"os": "linux", "architecture": "arm", "variant": "v7"}),
        entry(D["d"], {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    )
    assert select_platforms(
        idx,
        ["linux/amd64", "linux/amd64/v2", "linux/arm/v7", "linux/arm/v6", "linux/arm64"],
    ) == {
        "linux/amd64": D["a"],  # no variant asked: any variant matches
        "linux/amd64/v2": None,
        "linux/arm/v7": D["c"],
        "linux/arm/v6": D["b"],
        "linux/arm64": D["d"],
    }


def test_select_bare_arm_means_v7() -> None:
    idx = index(
        entry(D["b"], {"os": "linux", "architecture": "arm", "variant": "v6"}),
        entry(D["c"], {"os": "linux", "architecture": "arm", "variant": "v7"}),
    )
    assert select_platforms(idx, ["linux/arm"]) == {"linux/arm": D["c"]}


def test_select_normalises_index_entries() -> None:
    idx = index(
        entry(D["a"], {"os": "linux", "architecture": "x86_64"}),
        entry(D["b"], {"os": "linux", "architecture": "aarch64"}),
        entry(D["c"], {"os": "linux", "architecture": "arm"}),
    )
    assert select_platforms(idx, ["linux/amd64", "linux/arm64/v8", "linux/armhf"]) == {
        "linux/amd64": D["a"],
        "linux/arm64/v8": D["b"],
        "linux/armhf": D["c"],
    }


def test_select_entry_without_platform_is_not_assumed_linux_amd64() -> None:
    # SPEC §2: decided by evidence; such an entry is looked up by its config (evidence.py).
    idx = index(entry(D["e"], None), entry(D["f"], {"os": "linux", "architecture": "amd64"}))
    assert select_platforms(idx, ["linux/amd64", "linux/arm64"]) == {
        "linux/amd64": D["f"],
        "linux/arm64": None,
    }
    assert index_entries(idx) == [
        IndexEntry(D["e"], None, OCI_MANIFEST),
        IndexEntry(D["f"], Platform("linux", "amd64"), OCI_MANIFEST),
    ]


def test_select_missing_platform_is_none() -> None:
    idx = index(entry(D["a"], {"os": "linux", "architecture": "amd64"}))
    assert select_platforms(idx, ["linux/s390x", "windows/amd64"]) == {
        "linux/s390x": None,
        "windows/amd64": None,
    }


def test_select_ignores_unknown_media_types() -> None:
    idx = index(
        {
            "mediaType": "application/vnd.example.something+json",
            "digest": D["a"],
            "size": 1,
            "platform": {"os": "linux", "architecture": "amd64"},
        }
    )
    assert select_platforms(idx, ["linux/amd64"]) == {"linux/amd64": D["a"]}


@pytest.mark.parametrize(
    "doc",
    [{"schemaVersion": 2}, {"schemaVersion": 2, "manifests": {}}, index({"size": 1})],
    ids=["no-manifests", "manifests-not-list", "entry-without-digest"],
)
def test_select_rejects_malformed_index(doc: dict[str, Any]) -> None:
    with pytest.raises(ManifestFormatError):
        select_platforms(doc, ["linux/amd64"])


def test_select_skips_entries_annotated_as_references_whatever_their_platform() -> None:
    idx = index(
        entry(
            D["a"],
            {"os": "linux", "architecture": "amd64"},
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
        ),
        entry(D["b"], None, annotations={"vnd.docker.reference.type": "sbom"}),
        entry(D["c"], {"os": "linux", "architecture": "amd64"}),
    )
    assert select_platforms(idx, ["linux/amd64"]) == {"linux/amd64": D["c"]}
    assert index_entries(idx) == [IndexEntry(D["c"], Platform("linux", "amd64"), OCI_MANIFEST)]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"os": "linux", "architecture": "amd64"}, Platform("linux", "amd64")),
        ({"os": "linux", "architecture": "arm64", "variant": "v8"}, Platform("linux", "arm64")),
        ({"os": "linux", "architecture": "arm"}, Platform("linux", "arm", "v7")),
        (
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.5329"},
            Platform("windows", "amd64", "", "10.0.17763.5329"),
        ),
        ({"os": "unknown", "architecture": "unknown"}, None),
        ({"architecture": "amd64"}, None),
        ({"os": "linux", "architecture": 64}, None),
    ],
    ids=["amd64", "arm64-v8", "arm", "windows", "attestation", "no-os", "non-string"],
)
def test_config_platform(config: dict[str, Any], expected: Platform | None) -> None:
    assert config_platform(json.dumps(config).encode()) == expected


@pytest.mark.parametrize("body", [b"nope", b"[1]", b"[" * 100_000], ids=["text", "array", "deep"])
def test_config_platform_rejects_what_is_not_a_config(body: bytes) -> None:
    with pytest.raises(ManifestFormatError, match="image config"):
        config_platform(body)


def test_image_config_of_images_and_artifacts() -> None:
    digest = "sha256:" + "a" * 64
    image = {"config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": digest, "size": 7}}  # fmt: skip
    helm = {"config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                       "digest": digest, "size": 7}}  # fmt: skip
    assert image_config(image) == ConfigRef(digest, 7)
    assert image_config(helm) is None  # an artifact has no platform
    with pytest.raises(ManifestFormatError):
        image_config({"config": {**image["config"], "digest": "md5:x"}})


def test_schema1_platform_from_the_manifest_and_v1_compatibility() -> None:
    compat = json.dumps({"os": "linux", "architecture": "arm", "variant": "v6"})
    assert schema1_platform(
        {"schemaVersion": 1, "architecture": "arm", "history": [{"v1Compatibility": compat}]}
    ) == Platform("linux", "arm", "v6")
    assert schema1_platform({"schemaVersion": 1, "architecture": "amd64"}) == Platform(
        "linux", "amd64"
    )
    assert schema1_platform({"schemaVersion": 1}) is None


def test_windows_os_version_is_a_build_prefix() -> None:
    want = Platform.parse("windows/amd64/10.0.17763")
    assert want == Platform("windows", "amd64", "", "10.0.17763")
    assert str(want) == "windows/amd64/10.0.17763"
    idx = index(
        entry(D["a"], {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2227"}),
        entry(D["b"], {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.5329"}),
    )
    assert select_platforms(
        idx, ["windows/amd64/10.0.17763", "windows/amd64", "windows/amd64/10.0.1776"]
    ) == {
        "windows/amd64/10.0.17763": D["b"],
        "windows/amd64": D["a"],
        "windows/amd64/10.0.1776": None,
    }
