"""monitor.registry.transport.classify_failure: every branch, as (reason, cause) exactly.

failure_reason is its first half; both transports translate their faults into these
exception types at their edge (tests/registry/test_registry_faults.py, on the wire).
"""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from monitor.domain import Reason
from monitor.registry.transport import (
    MAX_REDIRECTS,
    ServerDisconnected,
    classify_failure,
    failure_reason,
)


def caused_by(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    error.verify_message = message
    return error


def ssl_error(reason: str | None) -> ssl.SSLError:
    error = ssl.SSLError(1, "[SSL] handshake")
    error.reason = reason  # type: ignore[misc]
    return error


CASES: list[tuple[str, BaseException, Reason, str]] = [
    (
        "redirects",
        httpx.TooManyRedirects("x"),
        Reason.PROTOCOL,
        f"more than {MAX_REDIRECTS} redirects",
    ),
    ("connect-timeout", httpx.ConnectTimeout("x"), Reason.TIMEOUT, "timed out connecting"),
    ("read-timeout", httpx.ReadTimeout("x"), Reason.TIMEOUT, "timed out waiting for an answer"),
    ("write-timeout", httpx.WriteTimeout("x"), Reason.TIMEOUT, "timed out sending the request"),
    (
        "pool-timeout",
        httpx.PoolTimeout("x"),
        Reason.TIMEOUT,
        "timed out waiting for a free connection",
    ),
    ("bare-timeout", TimeoutError(), Reason.TIMEOUT, "timed out"),
    (
        "timeout-over-tls-wait",
        caused_by(httpx.ReadTimeout("x"), ssl.SSLWantReadError()),
        Reason.TIMEOUT,
        "timed out waiting for an answer",
    ),
    (
        "cert",
        caused_by(httpx.ConnectError("x"), cert_error("self-signed certificate")),
        Reason.TLS,
        "TLS handshake failed (self-signed certificate)",
    ),
    (
        "cert-no-message",
        caused_by(httpx.ConnectError("x"), cert_error("")),
        Reason.TLS,
        "TLS handshake failed (certificate verify failed)",
    ),
    (
        "tls-reason",
        caused_by(httpx.ConnectError("x"), ssl_error("WRONG_VERSION_NUMBER")),
        Reason.TLS,
        "TLS handshake failed (wrong version number)",
    ),
    (
        "tls-no-reason",
        caused_by(httpx.ConnectError("x"), ssl_error(None)),
        Reason.TLS,
        "TLS handshake failed",
    ),
    (
        "disconnected",
        ServerDisconnected("x"),
        Reason.UNREACHABLE,
        "the server closed the connection without an answer",
    ),
    ("unsupported", httpx.UnsupportedProtocol("x"), Reason.PROTOCOL, "unsupported URL"),
    ("invalid-url", httpx.InvalidURL("x"), Reason.PROTOCOL, "unsupported URL"),
    ("remote-protocol", httpx.RemoteProtocolError("x"), Reason.PROTOCOL, "malformed HTTP answer"),
    ("local-protocol", httpx.LocalProtocolError("x"), Reason.PROTOCOL, "malformed HTTP answer"),
    ("decoding", httpx.DecodingError("x"), Reason.PROTOCOL, "malformed HTTP answer"),
    (
        "dns",
        caused_by(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
        Reason.UNREACHABLE,
        "cannot resolve the host (name or service not known)",
    ),
    (
        "refused",
        caused_by(httpx.ConnectError("x"), ConnectionRefusedError(111, "Connection refused")),
        Reason.UNREACHABLE,
        "cannot connect (connection refused)",
    ),
    (
        "reset",
        caused_by(httpx.ReadError("x"), ConnectionResetError(104, "Connection reset by peer")),
        Reason.UNREACHABLE,
        "connection reset by the server",
    ),
    (
        "broken-pipe",
        caused_by(httpx.WriteError("x"), BrokenPipeError(32, "Broken pipe")),
        Reason.UNREACHABLE,
        "connection reset by the server",
    ),
    (
        "other-os-error",
        caused_by(httpx.ConnectError("x"), OSError(113, "No route to host")),
        Reason.UNREACHABLE,
        "cannot connect (no route to host)",
    ),
    ("read-error", httpx.ReadError("x"), Reason.UNREACHABLE, "connection lost"),
    ("connect-error", httpx.ConnectError("x"), Reason.UNREACHABLE, "cannot connect"),
]


@pytest.mark.parametrize(
    ("exc", "reason", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify_failure(exc: BaseException, reason: Reason, cause: str) -> None:
    assert classify_failure(exc) == (reason, cause)
    assert failure_reason(exc) is reason
