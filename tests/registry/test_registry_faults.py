"""One fault table, every transport: the same fault gives the same status, reason and
cause through httpx's own pool (``regmon check`` with few references), through
httpx-aiohttp (many references, and ``regmon run``) and on its lean HEAD (the steady
state's one request, support/transports.py). SPEC §2."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from support.checks import run_checks
from support.faults import (
    Fault,
    WireRequest,
    WireServer,
    bad_request,
    free_port,
    http_answer,
    resolve_names,
    self_signed_tls,
)
from support.paths import TESTS
from support.transports import TRANSPORTS, LeanCounter

from monitor.domain import CheckResult, Reason, Status
from monitor.registry.client import RegistrySettings
from monitor.registry.transport import TransportFactory

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PING = http_answer(200, {"Content-Type": "application/json"}, b"{}")
NO_DIGEST_HEAD = http_answer(200, {"Content-Type": OCI_MANIFEST, "Content-Length": "2"})


# A request's timeout: long enough for a loopback connect on a loaded 2-core machine
# (0.5 s was not, seen once in CI: "timed out connecting"), short for the hang row,
# which waits it out.
TIMEOUT = 5.0
HANG_TIMEOUT = 0.5


def run(ref: str, transport: TransportFactory, *, timeout: float = TIMEOUT) -> CheckResult:
    [result] = run_checks(
        ref,
        budget=8.0,
        transport_factory=transport,
        settings_for=lambda host: RegistrySettings(timeout=timeout),
    )
    return result


def on_manifest(answer: bytes | Fault) -> Callable[[WireRequest], bytes | Fault]:
    """/v2/ answers 200; the manifest HEAD gets the fault; a GET after it (when the
    HEAD had no digest) gets ``answer`` too."""

    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        return PING if request.path == "/v2/" else answer

    return respond


def on_body(body_answer: bytes) -> Callable[[WireRequest], bytes | Fault]:
    """A HEAD without digest, so the fault is in the GET's answer."""

    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        if request.path == "/v2/":
            return PING
        return NO_DIGEST_HEAD if request.method == "HEAD" else body_answer

    return respond


@dataclass(frozen=True)
class Row:
    reason: Reason
    # The detail after "<host>: ". None for a broken body: aiohttp parses chunk framing
    # with the headers, httpcore while the body is read, so the words differ.
    cause: str | None
    server: Callable[[], WireServer] | None = None  # None: nothing listens
    name: str | None = None  # resolve this name to the server (https only, not loopback)


TABLE: dict[str, Row] = {
    "refused": Row(Reason.UNREACHABLE, "cannot connect (connection refused)"),
    "dns": Row(
        Reason.UNREACHABLE, "cannot resolve the host (name or service not known)", name="x.invalid"
    ),
    "tls-untrusted": Row(
        Reason.TLS,
        "TLS handshake failed (self-signed certificate)",
        lambda: WireServer(on_manifest(PING), tls=self_signed_tls("tls.test")),
        name="tls.test",
    ),
    "tls-to-plain-http": Row(
        Reason.TLS,
        "TLS handshake failed (wrong version number)",
        lambda: WireServer(on_manifest(PING)),
        name="plain.test",
    ),
    "tls-handshake-garbage": Row(
        Reason.TLS,
        "TLS handshake failed (packet length too long)",
        lambda: WireServer(lambda r: b"\x16\x03\x01garbage\r\n\r\n" * 4),
        name="garbage.test",
    ),
    "reset": Row(
        Reason.UNREACHABLE,
        "connection reset by the server",
        lambda: WireServer(on_manifest(Fault.RESET)),
    ),
    "closed-without-answer": Row(
        Reason.UNREACHABLE,
        "the server closed the connection without an answer",
        lambda: WireServer(on_manifest(Fault.CLOSE)),
    ),
    "hang": Row(
        Reason.TIMEOUT,
        "timed out waiting for an answer",
        lambda: WireServer(on_manifest(Fault.HANG)),
    ),
    "bad-status-line": Row(
        Reason.PROTOCOL,
        "malformed HTTP answer",
        lambda: WireServer(on_manifest(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")),
    ),
    "not-http": Row(
        Reason.PROTOCOL,
        "malformed HTTP answer",
        lambda: WireServer(on_manifest(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")),
    ),
    "malformed-header": Row(
        Reason.PROTOCOL,
        "malformed HTTP answer",
        lambda: WireServer(on_manifest(b"HTTP/1.1 200 OK\r\nBroken header line\r\n\r\n")),
    ),
    "bad-chunked-body": Row(
        Reason.PROTOCOL,
        None,
        lambda: WireServer(
            on_body(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
            )
        ),
    ),
    "truncated-body": Row(
        Reason.PROTOCOL,
        None,
        lambda: WireServer(
            on_body(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\n"
                b'Content-Length: 500\r\nConnection: close\r\n\r\n{"schemaVersion": 2'
            )
        ),
    ),
    "garbage-body": Row(
        Reason.PROTOCOL,
        "answered 200 with manifest body is not JSON",
        lambda: WireServer(
            on_body(http_answer(200, {"Content-Type": OCI_MANIFEST}, b"<html>{{{ not json"))
        ),
    ),
}


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    mapping: dict[str, str] = {}
    with resolve_names(mapping):
        yield mapping


def _host(row: Row, server: WireServer | None, names: dict[str, str]) -> str:
    port = server.port if server is not None else free_port()
    if row.name is None:
        return f"127.0.0.1:{port}"
    if not row.name.endswith(".invalid"):  # .invalid resolves nowhere, by resolve_names
        names[row.name] = "127.0.0.1"
    return f"{row.name}:{port}"


@pytest.mark.parametrize("transport", list(TRANSPORTS), ids=list(TRANSPORTS))
@pytest.mark.parametrize("fault", list(TABLE), ids=list(TABLE))
def test_fault_table(fault: str, transport: str, names: dict[str, str]) -> None:
    row = TABLE[fault]
    server = row.server() if row.server else None
    lean = LeanCounter()
    factory = lean if transport == "lean" else TRANSPORTS[transport]
    heads: list[WireRequest] = []
    timeout = HANG_TIMEOUT if row.reason is Reason.TIMEOUT else TIMEOUT
    if server is None:
        host = _host(row, None, names)
        result = run(f"{host}/team/app:v1", factory, timeout=timeout)
    else:
        with server:
            host = _host(row, server, names)
            result = run(f"{host}/team/app:v1", factory, timeout=timeout)
            heads = [r for r in server.requests if r.method == "HEAD"]
    assert (result.status, result.reason) == (Status.ERROR, row.reason), result
    if transport == "lean":  # every HEAD that reached the server went the lean way
        assert "HEAD" not in lean.via_httpx, lean.via_httpx
        assert bool(lean.heads) == bool(heads) == (row.server is not None and "tls" not in fault)
    assert result.detail is not None
    if row.cause is not None:
        cause = result.detail.removeprefix(host + ": ").removeprefix(host + " ")
        assert cause == row.cause, result.detail


def test_tls_verification_is_on_by_default_for_both(names: dict[str, str]) -> None:
    """The untrusted row must be the certificate, not a broken test server: with the
    server's own certificate trusted the same check succeeds on both transports."""
    context = self_signed_tls("tls.test")

    def respond(request: WireRequest) -> bytes | Fault:
        if not request.valid:
            return bad_request(request)
        if request.path == "/v2/":
            return PING
        return http_answer(
            404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'
        )

    names["tls.test"] = "127.0.0.1"
    with WireServer(respond, tls=context) as server:
        for transport in TRANSPORTS.values():
            result = run(f"tls.test:{server.port}/team/app:v1", transport)
            assert (result.status, result.reason) == (Status.ERROR, Reason.TLS), result
    assert isinstance(context, ssl.SSLContext)


def _regmon_check(script: str, refs: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``regmon check REFS`` as a process running ``script`` (which calls the CLI), with
    tests/ on its path for ``support`` and no Docker credentials."""
    return subprocess.run(
        [sys.executable, "-c", script, "check", *refs],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DOCKER_CONFIG": "/nonexistent-regmon-test",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            **env,
        },
        timeout=60,
        check=False,
    )


# `regmon check` itself, with the resolver override installed in the child process (no
# DNS server is asked): up to 8 references use the streams transport, more httpx-aiohttp.
_RESOLVING_CLI = """
import runpy, sys
from support.faults import resolve_names
sys.argv = ["regmon", *sys.argv[1:]]
with resolve_names({}):
    runpy.run_module("monitor", run_name="__main__")
"""


@pytest.mark.parametrize("count", [1, 9], ids=["streams", "aiohttp"])
def test_regmon_check_dns_failure_is_unreachable_with_any_number_of_references(
    count: int,
) -> None:
    refs = [f"registry.invalid/team/app:v{n}" for n in range(count)]
    proc = _regmon_check(_RESOLVING_CLI, refs)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"error    {ref}  unreachable" for ref in refs]
    assert proc.stderr.splitlines() == [
        f"regmon: {ref}: registry.invalid: cannot resolve the host (name or service not known)"
        for ref in refs
    ]


# `regmon check` of many references (httpx-aiohttp) as a process, with `tls.test` resolved
# to loopback in it; at exit, what aiohttp's own default context holds and whether
# OpenSSL's bundle variable is as the process got it.
_TLS_CLI = """
import atexit, os, sys
from support.faults import resolve_names
def report():
    import aiohttp.connector
    cas = aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"]
    print(f"SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE')} aiohttp-default-cas={cas}",
          file=sys.stderr)
atexit.register(report)
sys.argv = ["regmon", *sys.argv[1:]]
with resolve_names({"tls.test": "127.0.0.1"}):
    from monitor.__main__ import run
    run()
"""


def test_regmon_check_of_many_references_verifies_tls_without_aiohttps_bundle() -> None:
    """aiohttp's two default contexts (never used: each request carries regmon's own)
    are built without parsing the CA bundle (~0.2 s); verification is as before."""
    bundle = ssl.get_default_verify_paths().openssl_cafile
    with WireServer(on_manifest(PING), tls=self_signed_tls("tls.test")) as server:
        host = f"tls.test:{server.port}"
        refs = [f"{host}/team/app:v{n}" for n in range(9)]
        proc = _regmon_check(_TLS_CLI, refs, SSL_CERT_FILE=bundle)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"error    {ref}  tls" for ref in refs]
    *errors, last = proc.stderr.splitlines()
    assert errors == [
        f"regmon: {ref}: {host}: TLS handshake failed (self-signed certificate)" for ref in refs
    ]
    assert last == f"SSL_CERT_FILE={bundle} aiohttp-default-cas=0"
