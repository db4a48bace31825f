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

__all__ = ["MIB", "Run", "gzip_bomb", "regmon_measured"]

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
