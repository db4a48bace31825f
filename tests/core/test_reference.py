"""Image reference parsing (SPEC §1), tabled over the shared reference vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.paths import DATA

from monitor.errors import InvalidReference
from monitor.reference import ImageReference, canonical_registry, is_valid_digest, parse_reference

VECTORS: list[dict[str, Any]] = json.loads(
    (DATA / "reference-vectors.json").read_text(encoding="utf-8")
)

# The vectors record distribution/reference, which leaves registry-1.docker.io alone.
# SPEC §1 deviates on purpose (as regclient does): registry-1.docker.io/x is
# docker.io/library/x, because Hub rejects the repository "ubuntu" without "library/".
SPEC_OVERRIDES: dict[str, dict[str, Any]] = {
    "registry-1.docker.io/library/ubuntu": {
        "domain": "docker.io",
        "repository": "library/ubuntu",
    },
    "registry-1.docker.io/ubuntu": {"domain": "docker.io", "repository": "library/ubuntu"},
}

SHA256 = "sha256:" + "b" * 64


def _expected(vector: dict[str, Any]) -> dict[str, Any]:
    return {**vector, **SPEC_OVERRIDES.get(vector["input"], {})}


def _vector_id(vector: dict[str, Any]) -> str:
    text: str = vector["input"] or "<empty>"
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)})"


VALID = [v for v in VECTORS if v["valid"]]
INVALID = [v for v in VECTORS if not v["valid"]]


def test_vectors_are_all_there() -> None:
    assert len(VECTORS) == 66
    assert {v["input"] for v in VECTORS} >= set(SPEC_OVERRIDES)


@pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)
def test_vector(vector: dict[str, Any]) -> None:
    if not vector["valid"]:
        with pytest.raises(InvalidReference) as info:
            parse_reference(vector["input"])
        assert info.value.reference == vector["input"]
        return
    expected = _expected(vector)
    ref = parse_reference(vector["input"])
    assert ref.api_host == expected["api_host"]
    assert ref.domain == expected["domain"]
    assert ref.registry == expected["domain"]
    assert ref.repository == expected["repository"]
    assert ref.path == expected["repository"]
    assert ref.tag == (expected["tag"] or None)
    assert ref.digest == (expected["digest"] or None)


@pytest.mark.parametrize("vector", VALID, ids=_vector_id)
def test_str_round_trips(vector: dict[str, Any]) -> None:
    ref = parse_reference(vector["input"])
    assert parse_reference(str(ref)) == ref
    assert str(parse_reference(str(ref))) == str(ref)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        ("Foo/bar", "Foo/bar:latest"),
        ("registry-1.docker.io/ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
        ("index.docker.io/acme/app", "docker.io/acme/app:latest"),
        ("ubuntu@" + SHA256, "docker.io/library/ubuntu@" + SHA256),
        ("ghcr.io/o/i:v1@" + SHA256, "ghcr.io/o/i:v1@" + SHA256),
    ],
)
def test_str_is_normalized(text: str, normalized: str) -> None:
    assert str(parse_reference(text)) == normalized


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("localhost:5000/foo", True),
        ("localhost/foo", True),
        ("LocalHost:5000/foo", True),
        ("127.0.0.1:5000/foo", True),
        ("127.0.0.2:5000/foo", True),
        ("[::1]:5000/foo", True),
        ("[::1]/foo", True),
        ("[0:0:0:0:0:0:0:1]:5000/foo", True),
        ("example.com/foo", False),
        ("example.com:5000/foo", False),
        ("128.0.0.1/foo", False),
        ("[::2]:5000/foo", False),
        ("localhost", False),  # no "/": the Hub image library/localhost
        ("ubuntu", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert parse_reference(text).is_loopback is loopback


def test_docker_hub_properties() -> None:
    ref = parse_reference("nginx:1.27")
    assert ref.is_docker_hub
    assert ref.api_host == "registry-1.docker.io"
    assert ref.registry == "docker.io"
    assert ref.name == "docker.io/library/nginx"
    assert ref.target == "1.27"
    assert ref.host_key == "docker.io"


def test_other_registry_properties() -> None:
    ref = parse_reference("MyRegistry.Example.COM:5000/team/app")
    assert not ref.is_docker_hub
    assert ref.domain == "MyRegistry.Example.COM:5000"  # sent as written
    assert ref.api_host == "MyRegistry.Example.COM:5000"
    assert ref.host_key == "myregistry.example.com:5000"
    assert ref.name == "MyRegistry.Example.COM:5000/team/app"
    assert ref.tag == "latest"
    assert ref.target == "latest"


def test_tag_and_digest_keeps_tag_and_targets_digest() -> None:
    ref = parse_reference(f"myhost:5000/a/b/c:tag@{SHA256}")
    assert ref.tag == "tag"
    assert ref.digest == SHA256
    assert ref.target == SHA256
    assert str(ref) == f"myhost:5000/a/b/c:tag@{SHA256}"


def test_digest_only_has_no_tag() -> None:
    ref = parse_reference(f"ubuntu@{SHA256}")
    assert ref.tag is None
    assert ref.target == SHA256


def test_reference_needs_tag_or_digest() -> None:
    with pytest.raises(ValueError, match="tag or a digest"):
        ImageReference("docker.io", "library/x", None, None)


def test_reference_is_a_hashable_value() -> None:
    assert parse_reference("ubuntu") == parse_reference("docker.io/library/ubuntu:latest")
    assert len({parse_reference("ubuntu"), parse_reference("library/ubuntu:latest")}) == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty reference"),
        ("https://gcr.io/foo", "scheme 'https://' is not allowed in an image reference"),
        ("ubuntu:.hidden", "tag '.hidden' must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        ("foo:bar:baz", "tag 'bar:baz' must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        ("ubuntu:" + "t" * 129, "must be at most 128 characters"),
        ("docker.io/Ubuntu", "repository name 'library/Ubuntu' must be lowercase"),
        ("UBUNTU", "repository name 'library/UBUNTU' must be lowercase"),
        ("foo@md5:" + "f" * 32, "unsupported digest algorithm 'md5'"),
        ("foo@sha256:" + "f" * 43, "sha256 digest needs 64 lowercase hex characters"),
        ("foo@sha256:" + "F" * 64, "sha256 digest needs 64 lowercase hex characters"),
        ("foo@sha256", "digest 'sha256' must be <algorithm>:<hex>"),
        ("a___b", "repository name component 'a___b' must match"),
        ("foo//bar", "repository name 'foo//bar' has an empty component"),
        (":tag", "missing repository name"),
        ("example.com/" + "a" * 256, "not be more than 255 characters (got 256)"),
        ("b" * 64, "64-character hex string alone"),
        ("[fe80::1%eth0]:5000/foo", "registry host '[fe80::1%eth0]:5000' is not a valid"),
        # distribution/reference parses this with an empty domain; a registry we can't name.
        ("a_b.c/d", "registry host 'a_b.c' is not a valid host[:port]"),
    ],
)
def test_error_names_the_offending_part(text: str, why: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert why in info.value.why
    assert why in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["ubuntu\n", "ubuntu:latest\n", "\nubuntu", "ub\u2028untu"])
def test_trailing_newline_is_refused_and_escaped(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (SHA256, True),
        ("sha384:" + "a" * 96, True),
        ("sha512:" + "a" * 128, True),
        ("sha256:" + "a" * 63, False),
        ("sha256:" + "a" * 65, False),
        ("sha256:" + "A" * 64, False),
        ("sha512:" + "a" * 64, False),
        ("md5:" + "a" * 32, False),
        ("SHA256:" + "a" * 64, False),
        ("sha256:" + "a" * 64 + "\n", False),
        ("", False),
    ],
)
def test_is_valid_digest(value: str, valid: bool) -> None:
    assert is_valid_digest(value) is valid


def _parse_or_refuse(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        message = str(exc)
        assert "\n" not in message
        assert len(message.splitlines()) == 1
        assert exc.reference == text
    else:
        assert parse_reference(str(ref)) == ref


@given(st.text())
@example("\x00")
@example("a\r\nb")
def test_parse_raises_only_invalid_reference(text: str) -> None:
    _parse_or_refuse(text)


@given(st.text(alphabet="abcAB019._-:/@[]%", max_size=80))
@example("[::1]:5000/a")
@example("localhost:5000")
def test_parse_reference_alphabet_raises_only_invalid_reference(text: str) -> None:
    _parse_or_refuse(text)


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("Index.Docker.IO", "docker.io"),
        ("GHCR.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_canonical_registry_folds_docker_hub_hosts(host: str, canonical: str) -> None:
    assert canonical_registry(host) == canonical


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST:5000", True),
        ("127.0.0.1", True),
        ("127.9.8.7:443", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("[0:0:0:0:0:0:0:1]:5000", True),  # the registry client's old test said no
        ("127.000.0.1", False),  # ... and yes here: leading zeros are octal to inet_aton
        ("127.1", False),
        ("128.0.0.1", False),
        ("[::2]", False),
        ("localhost.example.com", False),
        ("registry-1.docker.io", False),
    ],
)
def test_one_loopback_test_for_hosts(host: str, loopback: bool) -> None:
    from monitor.reference import is_loopback
    from monitor.registry import session

    assert is_loopback(host) is loopback
    assert session.is_loopback is is_loopback
