"""Hostile answers for tests, and a `regmon` run that reports its own peak memory.

run = regmon_measured("check", ref)      # Run(returncode, stdout, stderr, max_rss_kib)
body = gzip_bomb(1024 * MIB)             # ~1 MB of valid gzip that inflates to 1 GiB
"""

from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass

__all__ = ["MIB", "Run", "StreamingRealm", "gzip_bomb", "regmon_measured"]

MIB = 1024 * 1024


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_kib: int


# The peak RSS of a child counts what it inherited at fork until it execs, so a child
# of this (large) test process would report the test's size. A small launcher forks
# the command and reports that grandchild's own peak.
_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def regmon_measured(*args: str, timeout: float = 60) -> Run:
    """Run `python -m monitor` as a user would; also return its peak RSS in KiB."""
    env = {**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"}
    env.pop("DOCKER_AUTH_CONFIG", None)
    with tempfile.NamedTemporaryFile("r") as rss:
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, rss.name, sys.executable, "-m", "monitor", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        peak = int(rss.read() or 0)
    return Run(proc.returncode, proc.stdout, proc.stderr, peak)


@functools.cache
def gzip_bomb(total: int = 1024 * MIB) -> bytes:
    """About 1 MB of gzip that inflates to ``total`` zero bytes (a valid stream).

    One full-flushed deflate segment is position independent, so it is repeated
    instead of compressing a GiB on every run.
    """
    block = bytes(MIB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // MIB):
        crc = zlib.crc32(block, crc)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + segment * (total // MIB) + final + struct.pack("<II", crc, total & 0xFFFFFFFF)


# A registry and realm in one child process, so that a huge answer is never held in
# the test process (whose peak RSS every later child would inherit until it execs).
_STREAMING_REALM = """
import http.server, sys
size = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            head, tail = b'{"token": "', b'"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(head) + size + len(tail)))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(head)
                for _ in range(size // 65536):
                    self.wfile.write(b"a" * 65536)
                self.wfile.write(b"a" * (size % 65536) + tail)
            except OSError:
                pass  # the client stopped reading: that is the point
            return
        challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="hostile"'
        self.send_response(401)
        self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class StreamingRealm:
    """A registry whose realm answers a token of ``token_bytes`` bytes, streamed from a
    child process: ``with StreamingRealm(50 * MIB) as realm: realm.host``."""

    def __init__(self, token_bytes: int) -> None:
        self.token_bytes = token_bytes
        self._proc: subprocess.Popen[str] | None = None
        self.host = ""

    def __enter__(self) -> StreamingRealm:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _STREAMING_REALM, str(self.token_bytes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.host = f"127.0.0.1:{self._proc.stdout.readline().strip()}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
