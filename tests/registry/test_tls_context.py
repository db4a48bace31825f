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


def test_ssl_cert_file_is_the_bundle_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = ssl.get_default_verify_paths().openssl_cafile
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(bundle).resolve()))
    assert tls_context(None).cert_store_stats()["x509_ca"] > 100


def test_a_ca_file_is_the_only_ca(tmp_path: Path) -> None:
    from support.registry import RegistryServer

    server = RegistryServer(tmp_path / "reg", tls=True)  # writes its self-signed cert
    context = tls_context(str(server.ca_file))
    assert context.cert_store_stats()["x509_ca"] == 1
