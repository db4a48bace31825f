"""Where credentials for a registry come from.

Order: the config's ``registries:`` entry, then docker's config.json
(``credHelpers`` over ``credsStore`` over ``auths``, as the docker CLI does),
then anonymous. Docker Hub's key in config.json is ``https://index.docker.io/v1/``.

A missing config.json is normal (anonymous). One that cannot be read or is not
JSON, and a credential helper that is not on PATH, are each one warning per
store (the CLI makes one store per run), then the check goes on without those
credentials, as the docker CLI does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.reference import HUB_HOSTS

__all__ = [
    "DOCKER_HUB_AUTH_KEY",
    "Credential",
    "CredentialStore",
    "docker_config_path",
    "docker_config_problems",
    "read_docker_config",
]

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 10.0
CREDENTIAL_TTL = 600.0
DOCKER_CONFIG_LIMIT = 4 * 1024 * 1024  # a config.json is a few KiB; this is not one
_UNUSED = "registries are checked without its credentials"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credential:
    """Something to authenticate with. Never printed: repr hides the secrets."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None  # OAuth2 refresh token (identitytoken / helper "<token>")
    registry_token: str | None = None  # a ready bearer token
    source: str = "config"

    @property
    def id(self) -> str:
        """A cache key that separates identities without holding the secret."""
        return f"{self.source}:{self.username or ''}"

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, source={self.source!r})"


def docker_config_path(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def read_docker_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """docker's config (``DOCKER_AUTH_CONFIG`` if set, as docker does, else the file at
    ``path``) and what is wrong with it, if anything. A missing file is nothing wrong."""
    text = os.environ.get("DOCKER_AUTH_CONFIG")
    source = "DOCKER_AUTH_CONFIG"
    if text is None:
        source = str(path)
        try:
            text = _read_bounded(path)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            return {}, f"docker config {source}: cannot read ({_why(exc)}); {_UNUSED}"
    if not text.strip():
        return {}, None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the text holds credentials.
        where = f"line {exc.lineno}, column {exc.colno}"
        return {}, f"docker config {source}: not valid JSON ({where}); {_UNUSED}"
    if not isinstance(doc, dict):
        return {}, f"docker config {source}: not a JSON object; {_UNUSED}"
    return doc, None


def docker_config_problems(path: Path) -> list[str]:
    """Everything :class:`CredentialStore` would warn about for ``path``, found now
    (``regmon config validate``): the file itself, then every helper not on PATH."""
    doc, problem = read_docker_config(path)
    problems = [problem] if problem else []
    helpers = doc.get("credHelpers")
    named = [("credsStore", doc.get("credsStore"))]
    if isinstance(helpers, dict):
        named += [(f"credHelpers[{key!r}]", name) for key, name in helpers.items()]
    for key, name in named:
        if isinstance(name, str) and name and shutil.which(f"docker-credential-{name}") is None:
            message = _missing_helper(name, key, _source(path))
            if message not in problems:
                problems.append(message)
    return problems


def _read_bounded(path: Path) -> str:
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(0, "not a regular file")
        data = handle.read(DOCKER_CONFIG_LIMIT + 1)
    if len(data) > DOCKER_CONFIG_LIMIT:
        raise OSError(0, f"larger than {DOCKER_CONFIG_LIMIT // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OSError(0, "not UTF-8 text") from None


def _why(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return exc.strerror or type(exc).__name__


def _source(path: Path) -> str:
    return "DOCKER_AUTH_CONFIG" if "DOCKER_AUTH_CONFIG" in os.environ else str(path)


def _missing_helper(name: str, key: str, source: str) -> str:
    return (
        f"credential helper docker-credential-{name} ({key} in {source}) is not on PATH; "
        "registries it serves are checked without credentials"
    )


def _hostname(key: str) -> str:
    """``https://host:5000/v1/`` → ``host:5000`` (the docker CLI's ConvertToHostname)."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0].lower()


def _decode_auth(entry: Mapping[str, Any]) -> Credential | None:
    if entry.get("registrytoken"):
        return Credential(registry_token=str(entry["registrytoken"]), source="docker-config")
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=False).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        username, _, password = raw.partition(":")
        password = password.replace("\x00", "")
    if entry.get("identitytoken"):
        return Credential(
            username=username or None,
            identity_token=str(entry["identitytoken"]),
            source="docker-config",
        )
    if not username:
        return None
    return Credential(username=str(username), password=str(password or ""), source="docker-config")


class CredentialStore:
    """Resolves and remembers one credential (or None) per registry host."""

    def __init__(
        self,
        configured: Callable[[str], Credential | None] = lambda host: None,
        docker_config: Path | None = None,
    ) -> None:
        self._configured = configured
        self._docker_config_path = docker_config if docker_config else docker_config_path()
        self._docker_config: dict[str, Any] | None = None
        # host → (credential, monotonic expiry): helpers hand out short-lived tokens
        # (ECR: 12 h) and password files get rotated, so nothing is kept for ever.
        self._cache: dict[str, tuple[Credential | None, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._warned: set[str] = set()

    async def get(self, host_key: str) -> Credential | None:
        host_key = host_key.lower()
        cached = self._cache.get(host_key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        lock = self._locks.setdefault(host_key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(host_key)
            if cached is None or cached[1] <= time.monotonic():
                cached = (await self._resolve(host_key), time.monotonic() + CREDENTIAL_TTL)
                self._cache[host_key] = cached
            return cached[0]

    def forget(self, host_key: str) -> None:
        """Drop a credential the registry rejected: the next check resolves it anew."""
        self._cache.pop(host_key.lower(), None)

    async def _resolve(self, host_key: str) -> Credential | None:
        cred = self._configured(host_key)
        if cred is not None:
            return cred
        doc = self._load_docker_config()
        if not doc:
            return None
        key = DOCKER_HUB_AUTH_KEY if host_key in HUB_HOSTS else host_key
        helpers = doc.get("credHelpers")
        where = "credsStore"
        helper = helpers.get(key) if isinstance(helpers, dict) else None
        if helper is None and isinstance(helpers, dict):
            found = [(k, v) for k, v in helpers.items() if _hostname(k) == _hostname(key)]
            if found:
                where, helper = f"credHelpers[{found[0][0]!r}]", found[0][1]
        elif helper is not None:
            where = f"credHelpers[{key!r}]"
        if not helper:
            where, helper = "credsStore", doc.get("credsStore")
        if isinstance(helper, str) and helper:
            program = shutil.which(f"docker-credential-{helper}")
            if program is None:
                self._warn(_missing_helper(helper, where, _source(self._docker_config_path)))
                return None
            return await _run_helper(program, helper, key)
        auths = doc.get("auths")
        if isinstance(auths, dict):
            entry = auths.get(key)
            if entry is None:
                entry = next((v for k, v in auths.items() if _hostname(k) == _hostname(key)), None)
            if isinstance(entry, dict):
                return _decode_auth(entry)
        return None

    def _load_docker_config(self) -> dict[str, Any]:
        if self._docker_config is None:
            self._docker_config, problem = read_docker_config(self._docker_config_path)
            if problem:
                self._warn(problem)
        return self._docker_config

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)


async def _run_helper(program: str, name: str, server_url: str) -> Credential | None:
    """``docker-credential-<name> get``; "not found" (non-zero exit) means anonymous."""
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            "get",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(HELPER_TIMEOUT):
            out, _ = await proc.communicate(server_url.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    if proc.returncode != 0:
        return None
    try:
        doc = json.loads(out)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    username, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    if username == "<token>":
        return Credential(identity_token=secret, source=f"helper:{name}")
    return Credential(username=str(username or ""), password=secret, source=f"helper:{name}")
