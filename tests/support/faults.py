"""Tiny loopback servers for fault tests, and a counting reverse proxy.

Every server here is a context manager that binds 127.0.0.1:<free port> on
enter and closes every socket and thread on exit; ``.host`` is "127.0.0.1:PORT"
and ``.url`` is "http://127.0.0.1:PORT". The HTTP ones record each request
(``.requests``, ``.count()``, ``.counts``) and can be ``.reset()``.

    with status_server(429, {"Retry-After": "1"}) as srv: ...   # every request -> 429
    with hung_server() as srv: ...                              # accepts, never answers
    with garbage_server() as srv: ...                           # 200 manifests, non-JSON body
    port = free_port()                                          # nothing listens: refused
    with CountingProxy(registry.host) as proxy: ...             # forwards and counts
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import httpx

__all__ = [
    "CountingProxy",
    "HungServer",
    "LoopbackHTTPServer",
    "RecordedRequest",
    "Reply",
    "free_port",
    "garbage_server",
    "hung_server",
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
        try:
            reply = owner.respond(request)
        except Exception as exc:  # a broken test server should say why, not hang up
            reply = Reply(500, [("Content-Type", "text/plain")], repr(exc).encode())
        self.send_response(reply.status)
        names = set()
        for name, value in reply.headers:
            names.add(name.lower())
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class _OwnedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackHTTPServer


class LoopbackHTTPServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; subclasses implement ``respond``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: _OwnedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def respond(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    # lifecycle
    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _OwnedHTTPServer(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

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


class HungServer:
    """Accepts TCP connections and never answers, until closed.

    ``connections`` counts accepted connections (no request is ever parsed).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._accepted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="HungServer", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if not readable:
                continue
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self._accepted += 1

    def close(self) -> None:
        if self._sock is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._sock.close()
        self._sock = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("HungServer is not started")
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def connections(self) -> int:
        with self._lock:
            return self._accepted

    def reset(self) -> None:
        with self._lock:
            self._accepted = 0


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
