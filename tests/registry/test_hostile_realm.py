"""Hostile token endpoints and plain-HTTP realms, through the real `regmon check`.

A realm is any URL a registry names, so its answers are bounded like a registry's:
the body through the one capped reader (decoded bytes, so a gzip bomb stops at
1 MiB), the token by length and characters, ``expires_in`` by type. Credentials
never go in clear text to the realm of an HTTPS registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.faults import RecordedRequest, Reply
from support.hostile import MIB, StreamingRealm, gzip_bomb, regmon_measured
from support.images import ImagePusher
from support.registry import RegistryServer
from support.token_issuer import PASSWORD, USERNAME, TokenIssuer

RSS_BOUND_KIB = 200 * 1024  # `regmon check` itself is ~60 MiB


class HostileIssuer(TokenIssuer):
    """The suite's token issuer (so pushes work) until ``reply`` is set; then ``reply``
    builds every answer from a real, registry-accepted token."""

    def __init__(self) -> None:
        super().__init__()
        self.reply: Callable[[str], Reply] | None = None

    def respond(self, request: RecordedRequest) -> Reply:
        if self.reply is None:
            return super().respond(request)
        scopes = [v for k, v in _query(request.query) if k == "scope"]
        return self.reply(self.make_token(None, scopes))


def _query(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query)


def json_reply(doc: object, *headers: tuple[str, str]) -> Reply:
    return Reply(200, [("Content-Type", "application/json"), *headers], json.dumps(doc).encode())


def raw_reply(text: str) -> Reply:
    return Reply(200, [("Content-Type", "application/json")], text.encode())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileIssuer, str]]:
    with HostileIssuer() as issuer:
        workdir = tmp_path_factory.mktemp("registry-hostile-realm")
        with RegistryServer(workdir, "token", issuer=issuer) as registry:
            yield issuer, registry.host


SCENARIOS: dict[str, tuple[Callable[[str], Reply], str]] = {
    "gzip-bomb": (
        lambda token: Reply(
            200,
            [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            gzip_bomb(),
        ),
        "token endpoint answer is larger than 1 MiB",
    ),
    "100kib-token": (
        lambda token: json_reply({"access_token": "a" * (100 * 1024)}),
        "token endpoint answer: access_token is longer than 64 KiB",
    ),
    "number-token": (
        lambda token: json_reply({"token": 12345}),
        "token endpoint answer: token is not a string (a number)",
    ),
    "array-token": (
        lambda token: json_reply({"access_token": [token]}),
        "token endpoint answer: access_token is not a string (an array)",
    ),
    "crlf-token": (
        lambda token: json_reply({"token": token + "\r\nX-Injected: 1"}),
        "token endpoint answer: token has characters a header cannot carry",
    ),
    "string-expires-in": (
        lambda token: json_reply({"token": token, "expires_in": "300"}),
        "token endpoint answer: expires_in is not a number (a string)",
    ),
    "infinite-expires-in": (
        lambda token: raw_reply(f'{{"token": "{token}", "expires_in": Infinity}}'),
        "token endpoint answer: expires_in is not finite",
    ),
    "not-json": (
        lambda token: raw_reply("[" * 100_000),
        "token endpoint answered with something that is not JSON",
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hostile_token_answer_is_auth_failed_with_bounded_memory(
    name: str, hostile: tuple[HostileIssuer, str]
) -> None:
    issuer, host = hostile
    reply, detail = SCENARIOS[name]
    issuer.reply = reply
    ref = f"{host}/public/app:v1"
    try:
        run = regmon_measured("check", ref)
    finally:
        issuer.reply = None
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 3, run
    assert run.stdout.split() == ["error", ref, "auth_failed"]
    assert run.stderr.splitlines() == [f"regmon: {ref}: {detail}"]
    assert run.max_rss_kib < RSS_BOUND_KIB, f"peak RSS {run.max_rss_kib // 1024} MiB"


def test_a_50_mb_token_is_auth_failed_with_bounded_memory() -> None:
    with StreamingRealm(50 * MIB) as realm:
        ref = f"{realm.host}/team/app:v1"
        run = regmon_measured("check", ref)
    assert (run.returncode, run.stdout.split()) == (3, ["error", ref, "auth_failed"]), run
    assert run.stderr.splitlines() == [f"regmon: {ref}: token endpoint answer is larger than 1 MiB"]
    assert run.max_rss_kib < RSS_BOUND_KIB, f"peak RSS {run.max_rss_kib // 1024} MiB"


@pytest.mark.parametrize("expires_in", ["-5", "0", "1" + "0" * 400, "1e300"])
def test_odd_expires_in_is_clamped_and_the_token_used(
    expires_in: str, hostile: tuple[HostileIssuer, str]
) -> None:
    issuer, host = hostile
    issuer.reply = lambda token: raw_reply(f'{{"token": "{token}", "expires_in": {expires_in}}}')
    ref = f"{host}/public/absent:v1"
    try:
        run = regmon_measured("check", ref)
    finally:
        issuer.reply = None
    # The registry accepted the token: it answers for the manifest itself.
    assert (run.returncode, run.stdout.split()) == (1, ["missing", ref, "manifest", "unknown"])
    assert run.stderr == ""


# --- no credentials in clear text to the realm of an HTTPS registry ---------------------


@pytest.fixture(scope="module")
def tls_token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, TokenIssuer]]:
    """An HTTPS registry whose realm is a plain-HTTP issuer on another port."""
    with TokenIssuer() as issuer:
        workdir = tmp_path_factory.mktemp("registry-tls-token")
        with RegistryServer(workdir, "token", issuer=issuer, tls=True) as registry:
            assert registry.url.startswith("https://") and issuer.realm.startswith("http://")
            yield registry, issuer


def _tls_config(tmp_path: Path, registry: RegistryServer, extra: str = "") -> Path:
    config = tmp_path / "regmon.yaml"
    config.write_text(
        f'registries:\n  "{registry.host}":\n    username: {USERNAME}\n'
        f"    password: {PASSWORD}\n    ca_file: {registry.ca_file}\n{extra}"
    )
    return config


def test_credentials_are_not_sent_to_a_plain_http_realm_of_an_https_registry(
    tls_token_registry: tuple[RegistryServer, TokenIssuer], tmp_path: Path, unique_repo
) -> None:
    registry, issuer = tls_token_registry
    repo = unique_repo("private")
    with ImagePusher(registry.url, auth=(USERNAME, PASSWORD), verify=registry.verify) as pusher:
        pusher.push_image(repo, "v1", "oci")
    issuer.reset()
    ref = f"{registry.host}/{repo}:v1"
    run = regmon_measured("check", "--config", str(_tls_config(tmp_path, registry)), ref)
    assert run.returncode == 3, run
    assert run.stdout.split() == ["error", ref, "auth_failed"]
    assert run.stderr.splitlines() == [
        f"regmon: {ref}: refusing to send credentials to plain-HTTP realm {issuer.realm}"
        " (the registry is HTTPS; set insecure: true for it to allow this)"
    ]
    assert issuer.raw_requests == []  # not even an anonymous try


def test_insecure_registry_may_send_credentials_to_a_plain_http_realm(
    tls_token_registry: tuple[RegistryServer, TokenIssuer], tmp_path: Path, unique_repo
) -> None:
    registry, issuer = tls_token_registry
    repo = unique_repo("private")
    with ImagePusher(registry.url, auth=(USERNAME, PASSWORD), verify=registry.verify) as pusher:
        image = pusher.push_image(repo, "v1", "oci")
    issuer.reset()
    ref = f"{registry.host}/{repo}:v1"
    config = _tls_config(tmp_path, registry, "    insecure: true\n")
    run = regmon_measured("check", "--config", str(config), ref)
    assert (run.returncode, run.stdout.split()) == (0, ["present", ref, image.digest]), run
    assert [r.user for r in issuer.requests] == [USERNAME]


def test_anonymous_token_from_a_plain_http_realm_is_still_fetched(
    tls_token_registry: tuple[RegistryServer, TokenIssuer], tmp_path: Path, unique_repo
) -> None:
    registry, issuer = tls_token_registry
    repo = unique_repo("public")
    with ImagePusher(registry.url, auth=(USERNAME, PASSWORD), verify=registry.verify) as pusher:
        image = pusher.push_image(repo, "v1", "oci")
    issuer.reset()
    config = tmp_path / "regmon.yaml"
    config.write_text(f'registries:\n  "{registry.host}":\n    ca_file: {registry.ca_file}\n')
    ref = f"{registry.host}/{repo}:v1"
    run = regmon_measured("check", "--config", str(config), ref)
    assert (run.returncode, run.stdout.split()) == (0, ["present", ref, image.digest]), run
    assert [(r.user, r.status) for r in issuer.requests] == [(None, 200)]
    assert "authorization" not in issuer.raw_requests[0].headers
