"""monitor.registry.credentials: config entries, docker config.json, credential helpers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.registry.credentials import DOCKER_HUB_AUTH_KEY, Credential, CredentialStore

HOST = "reg.example:5000"


@dataclass
class DockerEnv:
    config_dir: Path
    bin_dir: Path
    record_dir: Path

    def write_config(self, doc: object) -> None:
        (self.config_dir / "config.json").write_text(json.dumps(doc))

    def helper(self, name: str, *, username: str, secret: str) -> None:
        """A docker-credential-<name> that records its argument and stdin, then answers."""
        answer = json.dumps({"ServerURL": "ignored", "Username": username, "Secret": secret})
        self._script(name, f"printf '%s' '{answer}'\nexit 0\n")

    def failing_helper(self, name: str) -> None:
        self._script(name, "echo 'credentials not found in native keychain'\nexit 1\n")

    def _script(self, name: str, body: str) -> None:
        path = self.bin_dir / f"docker-credential-{name}"
        record = self.record_dir / name
        path.write_text(
            f"#!/bin/sh\nprintf '%s' \"$1\" > '{record}.args'\ncat > '{record}.stdin'\n" + body
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def asked(self, name: str) -> str | None:
        """The key the helper was asked for on stdin, or None if it never ran."""
        path = self.record_dir / f"{name}.stdin"
        if not path.exists():
            return None
        assert (self.record_dir / f"{name}.args").read_text() == "get"
        return path.read_text()


@pytest.fixture
def docker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DockerEnv:
    env = DockerEnv(tmp_path / "docker", tmp_path / "bin", tmp_path / "record")
    for directory in (env.config_dir, env.bin_dir, env.record_dir):
        directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(env.config_dir))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    monkeypatch.setenv("PATH", f"{env.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def resolve(
    host: str,
    configured: Callable[[str], Credential | None] | None = None,
) -> Credential | None:
    async def main() -> Credential | None:
        store = CredentialStore(configured) if configured else CredentialStore()
        return await store.get(host)

    return asyncio.run(main())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- auths


def test_auths_entry_with_base64_auth(docker_env: DockerEnv) -> None:
    docker_env.write_config({"auths": {HOST: {"auth": b64("ci:s3:cr3t")}}})
    cred = resolve(HOST)
    assert cred is not None
    assert cred.username == "ci"
    assert cred.password == "s3:cr3t"  # split at the first colon only
    assert cred.identity_token is None


def test_auths_entry_for_another_host_is_not_used(docker_env: DockerEnv) -> None:
    docker_env.write_config({"auths": {"other.example": {"auth": b64("ci:s3cret")}}})
    assert resolve(HOST) is None


def test_auths_old_style_key_with_scheme_and_path(docker_env: DockerEnv) -> None:
    docker_env.write_config({"auths": {f"https://{HOST}/v1/": {"auth": b64("ci:s3cret")}}})
    cred = resolve(HOST)
    assert cred is not None
    assert (cred.username, cred.password) == ("ci", "s3cret")


@pytest.mark.parametrize("host", ["docker.io", "registry-1.docker.io", "index.docker.io"])
def test_docker_hub_uses_the_index_key(docker_env: DockerEnv, host: str) -> None:
    docker_env.write_config(
        {
            "auths": {
                DOCKER_HUB_AUTH_KEY: {"auth": b64("hubuser:hubpass")},
                "registry-1.docker.io": {"auth": b64("wrong:wrong")},
            }
        }
    )
    assert DOCKER_HUB_AUTH_KEY == "https://index.docker.io/v1/"
    cred = resolve(host)
    assert cred is not None
    assert (cred.username, cred.password) == ("hubuser", "hubpass")


def test_identitytoken_in_auths(docker_env: DockerEnv) -> None:
    docker_env.write_config(
        {"auths": {HOST: {"auth": b64("someone:"), "identitytoken": "refresh-123"}}}
    )
    cred = resolve(HOST)
    assert cred is not None
    assert cred.identity_token == "refresh-123"
    assert cred.password in (None, "")


def test_no_docker_config_means_anonymous(docker_env: DockerEnv) -> None:
    assert resolve(HOST) is None


def test_docker_auth_config_env_takes_precedence(
    docker_env: DockerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_env.write_config({"auths": {HOST: {"auth": b64("file:file")}}})
    monkeypatch.setenv(
        "DOCKER_AUTH_CONFIG", json.dumps({"auths": {HOST: {"auth": b64("env:env")}}})
    )
    cred = resolve(HOST)
    assert cred is not None
    assert cred.username == "env"


# --------------------------------------------------------------------------- helpers


def test_cred_helpers_beat_creds_store_beat_auths(docker_env: DockerEnv) -> None:
    docker_env.helper("perhost", username="from-perhost", secret="p1")
    docker_env.helper("store", username="from-store", secret="p2")
    docker_env.write_config(
        {
            "credHelpers": {HOST: "perhost"},
            "credsStore": "store",
            "auths": {HOST: {"auth": b64("from-auths:p3")}},
        }
    )
    cred = resolve(HOST)
    assert cred is not None
    assert (cred.username, cred.password) == ("from-perhost", "p1")
    assert docker_env.asked("perhost") == HOST
    assert docker_env.asked("store") is None


def test_creds_store_beats_auths(docker_env: DockerEnv) -> None:
    docker_env.helper("store", username="from-store", secret="p2")
    docker_env.write_config({"credsStore": "store", "auths": {HOST: {"auth": b64("a:p3")}}})
    cred = resolve(HOST)
    assert cred is not None
    assert (cred.username, cred.password) == ("from-store", "p2")
    assert docker_env.asked("store") == HOST


def test_helper_for_another_host_is_not_run(docker_env: DockerEnv) -> None:
    docker_env.helper("perhost", username="u", secret="s")
    docker_env.write_config(
        {"credHelpers": {"other.example": "perhost"}, "auths": {HOST: {"auth": b64("a:b")}}}
    )
    cred = resolve(HOST)
    assert cred is not None
    assert cred.username == "a"
    assert docker_env.asked("perhost") is None


def test_helper_is_asked_for_the_docker_hub_key(docker_env: DockerEnv) -> None:
    docker_env.helper("store", username="hub", secret="hubsecret")
    docker_env.write_config({"credsStore": "store"})
    cred = resolve("registry-1.docker.io")
    assert cred is not None
    assert cred.password == "hubsecret"
    assert docker_env.asked("store") == "https://index.docker.io/v1/"


def test_helper_not_found_means_anonymous(docker_env: DockerEnv) -> None:
    docker_env.failing_helper("store")
    docker_env.write_config({"credsStore": "store"})
    assert resolve(HOST) is None
    assert docker_env.asked("store") == HOST  # it was asked, and said "not found"


def test_helper_missing_from_path_means_anonymous(docker_env: DockerEnv) -> None:
    docker_env.write_config({"credsStore": "nosuchhelper"})
    assert resolve(HOST) is None


def test_helper_token_username_gives_an_identity_token(docker_env: DockerEnv) -> None:
    docker_env.helper("store", username="<token>", secret="refresh-xyz")
    docker_env.write_config({"credsStore": "store"})
    cred = resolve(HOST)
    assert cred is not None
    assert cred.identity_token == "refresh-xyz"
    assert cred.password is None
    assert cred.username != "<token>"


# --------------------------------------------------------------------------- precedence, secrecy


def test_configured_credential_beats_docker_config(docker_env: DockerEnv) -> None:
    docker_env.helper("store", username="from-store", secret="p2")
    docker_env.write_config({"credsStore": "store", "auths": {HOST: {"auth": b64("a:b")}}})

    def configured(host: str) -> Credential | None:
        return Credential(username="from-config", password="cfg") if host == HOST else None

    cred = resolve(HOST, configured)
    assert cred is not None
    assert (cred.username, cred.password) == ("from-config", "cfg")
    assert docker_env.asked("store") is None
    # another host still falls through to docker's config
    other = resolve("other.example", configured)
    assert other is not None
    assert other.username == "from-store"


def test_credential_is_resolved_once_per_host(docker_env: DockerEnv) -> None:
    docker_env.write_config({"auths": {HOST: {"auth": b64("a:b")}}})
    calls: list[str] = []

    def configured(host: str) -> Credential | None:
        calls.append(host)
        return None

    async def main() -> list[Credential | None]:
        store = CredentialStore(configured)
        return list(await asyncio.gather(*(store.get(HOST) for _ in range(10))))

    creds = asyncio.run(main())
    assert calls == [HOST]
    assert {c.username for c in creds if c} == {"a"}


def test_repr_hides_secrets() -> None:
    cred = Credential(
        username="ci",
        password="hunter2-password",
        identity_token="idtok-secret",
        registry_token="regtok-secret",
    )
    for text in (repr(cred), str(cred), repr([cred]), f"{cred!r}"):
        assert "hunter2-password" not in text
        assert "idtok-secret" not in text
        assert "regtok-secret" not in text
    assert "ci" in repr(cred)
