"""Tiny loopback servers for fault tests, and a counting reverse proxy.

Every server here is a support.loopback.LoopbackServer (as are the receivers, the
token issuer and the paging proxy): a context manager that binds 127.0.0.1:<free
port> on enter and closes every socket and thread on exit; ``.host`` is
"127.0.0.1:PORT" and ``.url`` is "http://127.0.0.1:PORT". The HTTP ones record each request
(``.requests``, ``.count()``, ``.counts``) and can be ``.reset()``.

    with status_server(429, {"Retry-After": "1"}) as srv: ...   # every request -> 429
    with hung_server() as srv: ...                              # accepts, never answers
    with garbage_server() as srv: ...                           # 200 manifests, non-JSON body
    port = free_port()                                          # nothing listens: refused
    with CountingProxy(registry.host) as proxy: ...             # forwards and counts
    with WireServer(lambda req: Fault.RESET) as srv: ...         # raw bytes, own framing
    with resolve_names({"xn--n3h.com": "127.0.0.1"}): ...        # names without /etc/hosts
    with GgcrRegistry() as srv: srv.put(repo, tag, body, ctype)  # go-containerregistry's answers
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import http.client
import json
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .loopback import LoopbackServer, LoopbackTCPServer

__all__ = [
    "CountingProxy",
    "Fault",
    "GgcrRegistry",
    "HungServer",
    "LoopbackHTTPServer",
    "RecordedRequest",
    "Reply",
    "WireRequest",
    "WireServer",
    "bad_request",
    "free_port",
    "garbage_server",
    "http_answer",
    "hung_server",
    "resolve_names",
    "self_signed_tls",
    "status_server",
]

HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def free_port() -> int:
    """A loopback TCP port that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _header_pairs(headers: HeaderItems | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: httpx.Headers
    body: bytes

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 status lines, but one request per connection (we always send
    # "Connection: close"), so no handler thread is left blocked on keep-alive.
    protocol_version = "HTTP/1.1"
    server: _OwnedHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        request = RecordedRequest(
            method=self.command,
            path=path,
            query=query,
            headers=httpx.Headers(list(self.headers.items())),
            body=self._read_body(),
        )
        owner = self.server.owner
        owner._record(request)
        owner._answer(self, request)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class _OwnedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackHTTPServer


class LoopbackHTTPServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1:<free port>; subclasses implement ``respond``
    (or ``_answer``, to write the answer's bytes themselves)."""

    def __init__(self, *, port: int = 0, address: str = "127.0.0.1") -> None:
        super().__init__(port=port, address=address)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: _OwnedHTTPServer | None = None

    def respond(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def _answer(self, h: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        try:
            reply = self.respond(request)
        except Exception as exc:  # a broken test server should say why, not hang up
            reply = Reply(500, [("Content-Type", "text/plain")], repr(exc).encode())
        h.send_response(reply.status)
        names = set()
        for name, value in reply.headers:
            names.add(name.lower())
            h.send_header(name, value)
        if "content-length" not in names:
            h.send_header("Content-Length", str(len(reply.body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD" and reply.body:
            h.wfile.write(reply.body)

    def _bind(self) -> int:
        server = _OwnedHTTPServer((self.address, self._bind_port), _Handler)
        server.owner = self
        self._server = server
        port: int = server.server_address[1]
        return port

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.05)

    def _unbind(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # counters
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """Requests seen so far, by (method, path)."""
        with self._lock:
            return Counter((r.method, r.path) for r in self._requests)

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._requests
                if (method is None or r.method == method)
                and (path_prefix is None or r.path.startswith(path_prefix))
            )

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()


class StatusServer(LoopbackHTTPServer):
    def __init__(self, status: int, headers: HeaderItems | None = None, body: bytes = b"") -> None:
        super().__init__()
        self.reply = Reply(status, _header_pairs(headers), body)

    def respond(self, request: RecordedRequest) -> Reply:
        return self.reply


def status_server(
    status: int, headers: HeaderItems | None = None, body: bytes = b""
) -> StatusServer:
    """Answer every request, GET /v2/ included, with ``status``, ``headers`` and ``body``.

    ``headers`` may be a dict or a list of pairs (for repeated headers such as
    several WWW-Authenticate challenges).
    """
    return StatusServer(status, headers, body)


GARBAGE_BODY = b"<html>this is not a manifest {{{"


class GarbageServer(LoopbackHTTPServer):
    def respond(self, request: RecordedRequest) -> Reply:
        if request.path in ("/v2", "/v2/"):
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        if "/manifests/" in request.path and request.method in ("GET", "HEAD"):
            # Deliberately no Docker-Content-Digest, and a body that is not JSON.
            return Reply(
                200, [("Content-Type", "application/vnd.oci.image.manifest.v1+json")], GARBAGE_BODY
            )
        return Reply(404, [("Content-Type", "text/plain")], b"404 page not found\n")


def garbage_server() -> GarbageServer:
    """GET /v2/ -> 200; manifest HEAD/GET -> 200 OCI manifest type, no digest, non-JSON body."""
    return GarbageServer()


class HungServer(LoopbackTCPServer):
    """Accepts TCP connections and never answers, until closed.

    ``connections`` counts accepted connections (no request is ever parsed).
    """

    def __init__(self) -> None:
        super().__init__()
        self._accepted_count = 0

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            self._accepted_count += 1

    @property
    def connections(self) -> int:
        with self._lock:
            return self._accepted_count

    def reset(self) -> None:
        with self._lock:
            self._accepted_count = 0


def hung_server() -> HungServer:
    """A server that accepts connections and never sends a byte (for timeout tests)."""
    return HungServer()


class CountingProxy(LoopbackHTTPServer):
    """Reverse proxy to ``upstream_host`` ("127.0.0.1:PORT") that records every request.

    Forwards method, path, query, headers (Host included, so the registry's
    absolute upload Locations point back at the proxy) and body; answers 502 if
    the upstream is unreachable. Count with ``.counts[("HEAD", "/v2/x/manifests/t")]``,
    ``.count("HEAD", "/v2/x/manifests/")`` or ``len(.requests)``.
    """

    def __init__(self, upstream_host: str, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.upstream_host = upstream_host
        self.timeout = timeout

    def respond(self, request: RecordedRequest) -> Reply:
        headers: dict[str, str] = {}
        for name, value in request.headers.multi_items():
            if name.lower() in _HOP_BY_HOP:
                continue
            # http.client takes a dict; join repeated headers as HTTP allows.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        conn = http.client.HTTPConnection(self.upstream_host, timeout=self.timeout)
        try:
            conn.request(request.method, request.target, body=request.body or None, headers=headers)
            response = conn.getresponse()
            body = response.read()
            # send_response() adds its own Date and Server.
            skip = _HOP_BY_HOP | {"date", "server"}
            reply_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in skip]
            if request.method == "HEAD" and response.getheader("Content-Length") is not None:
                reply_headers.append(("Content-Length", response.getheader("Content-Length", "")))
            return Reply(response.status, reply_headers, body)
        except OSError as exc:
            return Reply(502, [("Content-Type", "text/plain")], f"upstream: {exc!r}".encode())
        finally:
            conn.close()


# --------------------------------------------------------------------------- raw wire faults


class Fault(enum.Enum):
    """What a WireServer does instead of answering."""

    RESET = "reset"  # RST after reading the request (SO_LINGER 0)
    CLOSE = "close"  # FIN after reading the request, no answer
    HANG = "hang"  # keep the connection open, never answer


@dataclass(frozen=True)
class WireRequest:
    """One request as a WireServer read it. ``line`` is the raw request line; ``valid``
    is False when it was not ``METHOD /target HTTP/1.x`` (a desynchronised stream)."""

    connection: int
    line: str
    method: str
    path: str
    headers: httpx.Headers
    valid: bool


WireAnswer = Callable[[WireRequest], "bytes | Fault"]


def http_answer(
    status: int, headers: HeaderItems | None = None, body: bytes = b"", *, keep_alive: bool = True
) -> bytes:
    """The bytes of one HTTP/1.1 answer (Content-Length always set)."""
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}"]
    names = set()
    for name, value in _header_pairs(headers):
        names.add(name.lower())
        lines.append(f"{name}: {value}")
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _binary(buffer: bytes) -> bool:
    return bool(buffer) and not (65 <= buffer[0] <= 90)  # request lines start A-Z


def bad_request(request: WireRequest) -> bytes:
    """What an HTTP server answers to bytes that are not a request."""
    return http_answer(400, {"Content-Type": "text/plain"}, b"bad request", keep_alive=False)


class WireServer(LoopbackTCPServer):
    """Raw TCP (optionally TLS) on 127.0.0.1 that frames requests itself, as many servers
    do: a GET or HEAD is never read as having a body, so a stray body sent after one
    shows up as an invalid next request (``.requests[i].valid``), not silently skipped.

    ``answer(request)`` returns the answer's bytes (see ``http_answer``) or a Fault; it
    also gets invalid requests (a TLS ClientHello to a plain server, a stray body), for
    which ``bad_request`` is what an HTTP server answers.
    Keep-alive is honoured unless the answer says ``Connection: close``.
    """

    def __init__(self, answer: WireAnswer, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.tls = tls
        self._requests: list[WireRequest] = []
        self._connections = 0

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            number = self._connections
        threading.Thread(target=self._connection, args=(conn, number), daemon=True).start()

    def _connection(self, conn: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._keep(conn)
            self._serve_requests(conn, number)
        except (OSError, ssl.SSLError):
            pass  # the client gave up, or the handshake failed: that is the fault under test
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _serve_requests(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(None)
        buffer = b""
        while not self._stop.is_set():
            while b"\r\n\r\n" not in buffer and not _binary(buffer):
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            if _binary(buffer):  # a TLS ClientHello, say: no request line will come
                head, buffer = buffer[:64], b""
            else:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
            request = self._parse(head, number)
            with self._lock:
                self._requests.append(request)
            if request.method in ("POST", "PUT", "PATCH"):
                length = int(request.headers.get("content-length") or 0)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
            answer = self.answer(request)
            if answer is Fault.RESET:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if answer is Fault.CLOSE:
                return
            if answer is Fault.HANG:
                self._stop.wait()
                return
            assert isinstance(answer, bytes)
            conn.sendall(answer)
            if b"\r\nconnection: close\r\n" in answer.split(b"\r\n\r\n", 1)[0].lower() + b"\r\n":
                return

    @staticmethod
    def _parse(head: bytes, number: int) -> WireRequest:
        text = head.decode("latin-1")
        line, _, rest = text.partition("\r\n")
        parts = line.split(" ")
        valid = len(parts) == 3 and parts[1].startswith("/") and parts[2].startswith("HTTP/1.")
        # Only a request line's headers are read: the bytes of a TLS ClientHello (the
        # HTTPS probe) are random, and a "\r\n" and ":" among them made a non-ASCII
        # header name that httpx.Headers refuses (the server thread died; seen in CI).
        headers = httpx.Headers(
            [
                (name.strip(), value.strip())
                for name, sep, value in (h.partition(":") for h in rest.split("\r\n") if h)
                if sep
            ]
            if valid
            else []
        )
        method, path = (parts[0], parts[1].partition("?")[0]) if valid else ("", "")
        return WireRequest(number, line, method, path, headers, valid)

    @property
    def requests(self) -> list[WireRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections


def self_signed_tls(hostname: str = "localhost") -> ssl.SSLContext:
    """A server-side TLS context with a fresh self-signed certificate for ``hostname``."""
    import datetime as dt
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
        with open(cert_file, "wb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.contextmanager
def resolve_names(names: Mapping[str, str]) -> Iterator[None]:
    """Resolve ``names`` to the given addresses in this process, and every name under
    ``.invalid`` to "no such name" at once, without /etc/hosts or a DNS server.

    Both transports resolve through ``socket.getaddrinfo`` (asyncio's
    ``loop.getaddrinfo``; aiohttp's default ThreadedResolver), looked up per call.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii") if isinstance(host, bytes) else str(host)
        name = name.lower().rstrip(".")
        if name in names:
            return real(names[name], *args, **kwargs)
        if name == "invalid" or name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


# --------------------------------------------------------------------------- go-containerregistry


class GgcrRegistry(LoopbackHTTPServer):
    """Answers exactly as go-containerregistry's registry (``crane registry serve``,
    pkg/registry) does for the reads a checker makes:

    - errors are ``{"errors":[{"code":…,"message":…}]}`` plus a newline, written without
      a Content-Type, so Go's sniffing labels them ``text/plain; charset=utf-8``; a HEAD
      gets the same status and headers (Content-Length of that body), no body;
    - a missing repository is 404 NAME_UNKNOWN "Unknown name"; a missing tag or digest
      404 MANIFEST_UNKNOWN "Unknown manifest" (a digest is looked up like a tag);
    - a manifest is served with Docker-Content-Digest, Content-Length and whatever
      Content-Type it was pushed with, echoed back as is;
    - ``/v2/`` is 200 with Docker-Distribution-API-Version and no body; any other path
      404 METHOD_UNKNOWN; tags/list is JSON labelled ``text/plain; charset=utf-8``.

    ``put(repo, tag, body, content_type)`` stores a manifest under its tag and digest.
    """

    SNIFFED_TEXT = "text/plain; charset=utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.manifests: dict[str, dict[str, tuple[str, bytes]]] = {}

    def put(self, repo: str, tag: str, body: bytes, content_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with self._lock:
            stored = self.manifests.setdefault(repo, {})
            stored[tag] = stored[digest] = (content_type, body)
        return digest

    def delete(self, repo: str, tag: str) -> None:
        with self._lock:
            self.manifests.get(repo, {}).pop(tag, None)

    def _error(self, status: int, code: str, message: str) -> Reply:
        body = json.dumps({"errors": [{"code": code, "message": message}]}, separators=(",", ":"))
        return Reply(status, [("Content-Type", self.SNIFFED_TEXT)], body.encode() + b"\n")

    def respond(self, request: RecordedRequest) -> Reply:
        elems = request.path.split("/")[1:]
        if len(elems) >= 4 and elems[-2] == "manifests":
            return self._manifest(request, "/".join(elems[1:-2]), elems[-1])
        if len(elems) >= 4 and elems[-2] == "tags":
            return self._tags(request, "/".join(elems[1:-2]))
        version = [("Docker-Distribution-API-Version", "registry/2.0")]
        if request.path not in ("/v2/", "/v2"):
            reply = self._error(404, "METHOD_UNKNOWN", "We don't understand your method + url")
            return Reply(reply.status, version + reply.headers, reply.body)
        return Reply(200, version)

    def _manifest(self, request: RecordedRequest, repo: str, target: str) -> Reply:
        if request.method not in ("GET", "HEAD"):
            return self._error(400, "METHOD_UNKNOWN", "We don't understand your method + url")
        with self._lock:
            stored = self.manifests.get(repo)
            found = None if stored is None else stored.get(target)
        if stored is None:
            return self._error(404, "NAME_UNKNOWN", "Unknown name")
        if found is None:
            return self._error(404, "MANIFEST_UNKNOWN", "Unknown manifest")
        content_type, body = found
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = [("Docker-Content-Digest", digest), ("Content-Type", content_type)]
        return Reply(200, [*headers, ("Content-Length", str(len(body)))], body)

    def _tags(self, request: RecordedRequest, repo: str) -> Reply:
        if request.method != "GET":
            return self._error(400, "METHOD_UNKNOWN", "We don't understand your method + url")
        with self._lock:
            stored = self.manifests.get(repo)
            tags = sorted(t for t in stored or {} if "sha256:" not in t)
        if stored is None:
            return self._error(404, "NAME_UNKNOWN", "Unknown name")
        body = json.dumps({"name": repo, "tags": tags}, separators=(",", ":")).encode()
        return Reply(200, [("Content-Type", self.SNIFFED_TEXT)], body)
