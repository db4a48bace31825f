"""The registry TLS context: the system's CAs looked up when needed, not parsed up front."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from monitor.registry.transport import tls_context


def test_system_cas_come_from_the_hashed_directory_not_the_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    capath = ssl.get_default_verify_paths().capath
    assert capath is not None and any(p.suffix == ".0" for p in Path(capath).iterdir())
    context = tls_context(None)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    # Nothing parsed yet: OpenSSL reads the one issuer it needs during a handshake.
    assert context.cert_store_stats()["x509_ca"] == 0


def test_ssl_cert_file_naming_the_system_bundle_is_the_directory_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debian-like images export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    bundle = ssl.get_default_verify_paths().openssl_cafile
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(bundle).resolve()))
    assert tls_context(None).cert_store_stats()["x509_ca"] == 0


def test_ssl_cert_file_naming_another_bundle_is_parsed_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Path(ssl.get_default_verify_paths().openssl_cafile).resolve()
    other = tmp_path / "bundle.pem"
    other.write_bytes(bundle.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    assert tls_context(None).cert_store_stats()["x509_ca"] > 100


def test_a_ca_file_is_the_only_ca(tmp_path: Path) -> None:
    from support.registry import RegistryServer

    server = RegistryServer(tmp_path / "reg", tls=True)  # writes its self-signed cert
    context = tls_context(str(server.ca_file))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_a_registry_is_verified_against_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA looked up at handshake time: a registry whose CA is in SSL_CERT_DIR verifies."""
    import asyncio
    import shutil
    import subprocess

    from support.registry import RegistryServer

    from monitor.checker import check_reference
    from monitor.domain import Status
    from monitor.reference import parse_reference
    from monitor.registry.client import RegistryClient

    with RegistryServer(tmp_path / "reg", tls=True) as server:
        subject_hash = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", str(server.ca_file)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(server.ca_file, certs / f"{subject_hash}.0")
        monkeypatch.setenv("SSL_CERT_DIR", str(certs))
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)

        async def main() -> None:
            client = RegistryClient()
            try:
                result = await check_reference(client, parse_reference(f"{server.host}/x/y:v1"))
            finally:
                await client.aclose()
            # An HTTPS answer (the repository does not exist), not a TLS failure.
            assert (result.status, result.detail) == (Status.MISSING, "manifest unknown")

        asyncio.run(main())
