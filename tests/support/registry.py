"""Run the real CNCF distribution registry (Debian ``docker-registry`` 2.8.2) on loopback.

    server = RegistryServer(tmp_path, mode="token", issuer=token_issuer).start()
    server.host   # "127.0.0.1:PORT"
    server.stop(); server.start()   # same port, same storage: an outage and a recovery

``tls=True`` serves HTTPS with a fresh self-signed certificate (``.ca_file``;
``.verify`` for httpx).

Modes: ``noauth``; ``htpasswd`` (bcrypt, user ci / s3cret, realm "regmon-test");
``token`` (realm = the TokenIssuer's /token, service "regmon-test-registry",
issuer "regmon-test-issuer", rootcertbundle = the issuer's certificate).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .faults import free_port
from .token_issuer import PASSWORD, USERNAME, TokenIssuer
from .wait import wait_for

__all__ = ["BASIC_REALM", "REGISTRY_BINARY", "Mode", "RegistryServer", "require_registry_binary"]

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
BASIC_REALM = "regmon-test"
Mode = Literal["noauth", "htpasswd", "token"]

_INSTALL_HINT = (
    "{binary} is missing: the registry integration tests need the real registry. "
    "Install it with the project's test setup command, `apt-get install -y docker-registry "
    "skopeo` (what .ci/run runs before pytest), then rerun the tests."
)


def _write_self_signed(cert_path: Path, key_path: Path) -> None:
    """A certificate for 127.0.0.1 and localhost, its own CA (the file to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regmon-test-registry")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def require_registry_binary() -> None:
    """Fail (never skip) the calling test or fixture when the registry is not installed."""
    if not REGISTRY_BINARY.exists():
        pytest.fail(_INSTALL_HINT.format(binary=REGISTRY_BINARY), pytrace=False)


class RegistryServer:
    """One ``docker-registry serve`` subprocess with its own config, storage and port."""

    def __init__(
        self,
        workdir: Path,
        mode: Mode = "noauth",
        *,
        issuer: TokenIssuer | None = None,
        port: int | None = None,
        log_level: str = "error",
        tls: bool = False,
    ) -> None:
        if mode not in ("noauth", "htpasswd", "token"):
            raise ValueError(f"unknown registry mode {mode!r}")
        if mode == "token" and issuer is None:
            raise ValueError("token mode needs a TokenIssuer")
        self.mode: Mode = mode
        self.issuer = issuer
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.port = port or free_port()
        self.log_level = log_level
        self.tls = tls
        self.ca_file = self.workdir / "tls-cert.pem"  # with tls: the certificate to trust
        if tls:
            _write_self_signed(self.ca_file, self.workdir / "tls-key.pem")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._write_config()

    # addresses and credentials
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client needs to trust this registry."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else True

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The user that may do everything, or None when the registry has no auth."""
        return None if self.mode == "noauth" else (USERNAME, PASSWORD)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # config
    def _write_config(self) -> None:
        lines = [
            "version: 0.1",
            "log:",
            f"  level: {self.log_level}",
            "  accesslog: {disabled: true}",
            "storage:",
            f"  filesystem: {{rootdirectory: {self.storage}}}",
            "  delete: {enabled: true}",
            "http:",
            f"  addr: {self.host}",
            # A fixed secret keeps upload state valid across stop()/start().
            "  secret: regmon-test-http-secret",
        ]
        if self.tls:
            key = self.workdir / "tls-key.pem"
            lines += ["  tls:", f"    certificate: {self.ca_file}", f"    key: {key}"]
        if self.mode == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            # Cost 4 (the minimum): the registry checks the hash on every request.
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd.write_text(f"{USERNAME}:{hashed}\n")
            lines += ["auth:", "  htpasswd:", f"    realm: {BASIC_REALM}", f"    path: {htpasswd}"]
        elif self.mode == "token":
            assert self.issuer is not None
            bundle = self.workdir / "rootcert.pem"
            bundle.write_bytes(self.issuer.certificate_pem)
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.issuer.realm}",
                f"    service: {self.issuer.service}",
                f"    issuer: {self.issuer.issuer}",
                f"    rootcertbundle: {bundle}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    # lifecycle
    def start(self, timeout: float = 10.0) -> Self:
        """Start (or restart, same port and storage) and wait until GET /v2/ answers."""
        if self.running:
            return self
        require_registry_binary()
        if self.mode == "token":
            # The issuer may have been (re)started on another port since __init__.
            self._write_config()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._ready, timeout=timeout, interval=0.02, message=f"registry {self.url}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {self._proc.returncode}:\n{self.read_log()}"
            )
        try:
            response = httpx.get(f"{self.url}/v2/", timeout=0.5, verify=self.verify)
        except httpx.TransportError:
            return False
        return response.status_code in (200, 401)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process and wait for it; the port is free when this returns."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegistryServer {self.mode} {self.url} {state}>"
