"""A toy Docker token server (``/token``) that registry 2.8.2 accepts.

JWTs are RS256, signed with a fresh RSA-2048 key, with header ``x5c`` = the
self-signed certificate (standard base64 DER), which is also the registry's
``rootcertbundle``. Registry 2.8 insists on ``aud`` being a JSON *string*
equal to its ``service`` and on an ``x5c``/``kid``/``jwk`` key header.

Policy (like Docker Hub, the server never refuses for missing permissions; it
grants the intersection, which may be empty):
- anonymous: ``pull`` on repositories whose name starts with ``public/``;
- ``ci``/``s3cret``: every requested action on everything;
- wrong Basic credentials, bad password grant, unknown refresh token: 401 JSON.

GET  /token?service=S&scope=A&scope=B[&offline_token=true]   (Basic auth optional)
POST /token  grant_type=password|refresh_token, scope="A B", access_type=offline
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .faults import LoopbackHTTPServer, RecordedRequest, Reply

__all__ = [
    "ISSUER",
    "PASSWORD",
    "SERVICE",
    "USERNAME",
    "TokenIssuer",
    "TokenRequest",
    "parse_scope",
]

SERVICE = "regmon-test-registry"
ISSUER = "regmon-test-issuer"
USERNAME = "ci"
PASSWORD = "s3cret"


@dataclass(frozen=True)
class TokenRequest:
    method: str  # "GET" or "POST"
    scopes: tuple[str, ...]
    user: str | None  # authenticated user; None for anonymous and for rejected requests
    service: str | None = None
    grant_type: str | None = None  # POST only
    status: int = 200


def parse_scope(scope: str) -> dict[str, Any] | None:
    """``type[(class)]:name:actions`` -> a JWT ``access`` entry (actions requested)."""
    type_part, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    entry: dict[str, Any] = {"type": type_part, "name": name}
    if type_part.endswith(")") and "(" in type_part:
        entry["type"], _, cls = type_part[:-1].partition("(")
        entry["class"] = cls
    entry["actions"] = [a for a in actions.split(",") if a]
    return entry


def _make_key_and_cert() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


_KEY_LOCK = threading.Lock()
_KEY_AND_CERT: tuple[rsa.RSAPrivateKey, x509.Certificate] | None = None


def _shared_key_and_cert() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    # RSA key generation costs ~0.1 s; one key per test process is plenty.
    global _KEY_AND_CERT
    with _KEY_LOCK:
        if _KEY_AND_CERT is None:
            _KEY_AND_CERT = _make_key_and_cert()
        return _KEY_AND_CERT


def _json_reply(status: int, payload: dict[str, Any]) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(payload).encode())


def _unauthorized(message: str) -> Reply:
    return _json_reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})


class TokenIssuer(LoopbackHTTPServer):
    """Threaded token server on 127.0.0.1:<free port>; use as a context manager or start()/close().

    Mutable knobs for tests: ``expires_in`` (seconds, default 300) and
    ``fail_status`` (answer every request with that status while set).
    """

    def __init__(
        self,
        *,
        service: str = SERVICE,
        issuer: str = ISSUER,
        expires_in: int = 300,
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.fail_status: int | None = None
        self.users = dict(users) if users is not None else {USERNAME: PASSWORD}
        self._key, self._cert = _shared_key_and_cert()
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        self._refresh_tokens: dict[str, str] = {}
        self._token_requests: list[TokenRequest] = []

    def rotate_key(self) -> None:
        """Sign with a new key from now on (a registry trusts it after its restart)."""
        self._key, self._cert = _make_key_and_cert()
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()

    # what a registry needs
    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def certificate_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    # counters
    @property
    def requests(self) -> list[TokenRequest]:  # type: ignore[override]
        with self._lock:
            return list(self._token_requests)

    @property
    def raw_requests(self) -> list[RecordedRequest]:
        return super().requests

    def reset(self) -> None:
        with self._lock:
            self._token_requests.clear()
        super().reset()

    def _log(self, entry: TokenRequest) -> None:
        with self._lock:
            self._token_requests.append(entry)

    # tokens
    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``user`` asking for ``scopes``."""
        access = []
        for scope in scopes:
            entry = parse_scope(scope)
            if entry is None:
                continue
            if user is None:
                public = entry["type"] == "repository" and entry["name"].startswith("public/")
                entry["actions"] = [a for a in entry["actions"] if public and a == "pull"]
            access.append(entry)
        return access

    def make_token(
        self,
        user: str | None,
        scopes: list[str],
        *,
        service: str | None = None,
        expires_in: int | None = None,
        now: float | None = None,
    ) -> str:
        """A signed JWT as the registry expects it; ``aud`` is the requested service."""
        now = time.time() if now is None else now
        lifetime = self.expires_in if expires_in is None else expires_in
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": service or self.service,  # a string: 2.8 rejects a list
            "exp": int(now) + lifetime,
            "nbf": int(now) - 1,
            "iat": int(now),
            "jti": uuid.uuid4().hex,
            "access": self.grant(user, scopes),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [self._x5c]})

    def _token_reply(
        self,
        user: str | None,
        scopes: list[str],
        service: str | None,
        refresh: bool,
        refresh_token: str | None = None,
    ) -> Reply:
        now = time.time()
        token = self.make_token(user, scopes, service=service, now=now)
        payload: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": dt.datetime.fromtimestamp(int(now), dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "scope": " ".join(scopes),
        }
        if refresh and user is not None:
            refresh_token = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh_tokens[refresh_token] = user
        if refresh_token is not None:
            payload["refresh_token"] = refresh_token
        return _json_reply(200, payload)

    def _basic_user(self, request: RecordedRequest) -> tuple[str | None, bool]:
        """(user, ok) from the Authorization header; no header -> (None, True)."""
        header = request.headers.get("authorization")
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            username, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        return (username, True) if self.users.get(username) == password else (None, False)

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path != "/token":
            return _json_reply(404, {"errors": [{"code": "NOT_FOUND", "message": request.path}]})
        if request.method == "GET":
            return self._respond_get(request)
        if request.method == "POST":
            return self._respond_post(request)
        return _json_reply(405, {"errors": [{"code": "UNSUPPORTED", "message": request.method}]})

    def _respond_get(self, request: RecordedRequest) -> Reply:
        params = parse_qs(request.query, keep_blank_values=True)
        scopes = [s for value in params.get("scope", []) for s in value.split(" ") if s]
        service = params.get("service", [None])[0]
        user, ok = self._basic_user(request)
        if self.fail_status is not None or not ok:
            status = self.fail_status or 401
            self._log(TokenRequest("GET", tuple(scopes), None, service, None, status))
            if status == 401:
                return _unauthorized("invalid username or password")
            return _json_reply(status, {"errors": [{"code": "UNAVAILABLE", "message": "fault"}]})
        self._log(TokenRequest("GET", tuple(scopes), user, service))
        offline = params.get("offline_token", ["false"])[0].lower() == "true"
        return self._token_reply(user, scopes, service, refresh=offline)

    def _respond_post(self, request: RecordedRequest) -> Reply:
        form = parse_qs(request.body.decode(), keep_blank_values=True)

        def field(name: str) -> str | None:
            return form.get(name, [None])[0]

        scopes = [s for s in (field("scope") or "").split(" ") if s]
        service, grant_type = field("service"), field("grant_type")

        def refuse(status: int, message: str) -> Reply:
            self._log(TokenRequest("POST", tuple(scopes), None, service, grant_type, status))
            if status == 401:
                return _unauthorized(message)
            return _json_reply(status, {"error": message})

        if self.fail_status is not None:
            return refuse(self.fail_status, "fault")
        if grant_type == "password":
            username = field("username") or ""
            if self.users.get(username) != field("password"):
                return refuse(401, "invalid username or password")
            user: str | None = username
            refresh = True
            kept = None
        elif grant_type == "refresh_token":
            kept = field("refresh_token") or ""
            with self._lock:
                user = self._refresh_tokens.get(kept)
            if user is None:
                return refuse(401, "invalid refresh token")
            refresh = False  # hand the same refresh token back; it stays valid
        else:
            return refuse(400, "unsupported_grant_type")
        self._log(TokenRequest("POST", tuple(scopes), user, service, grant_type))
        return self._token_reply(user, scopes, service, refresh=refresh, refresh_token=kept)
