"""monitor.httpserver: what bounds a slow or idle client, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from monitor import httpserver

Scope = dict[str, Any]


async def hello(scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


@asynccontextmanager
async def serving(
    *,
    max_connections: int = 100,
    head_timeout: float = 0.3,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = httpserver.make_server(
        hello,
        "127.0.0.1",
        port,
        max_connections=max_connections,
        head_timeout=head_timeout,
        headers=headers,
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (EOF), failing after ``limit``."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(limit):
        while await reader.read(1024):
            pass
    return loop.time() - began


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = await reader.read()
    writer.close()
    return body


def test_a_client_trickling_its_request_head_is_closed_at_the_head_timeout() -> None:
    async def go() -> float:
        async with serving(head_timeout=0.3) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def trickle() -> None:
                for byte in b"GET / HTTP/1.1\r\nHost: x":
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            trickler = asyncio.create_task(trickle())
            took = await closed_after(reader, 3.0)
            trickler.cancel()
            writer.close()
            return took

    took = asyncio.run(go())
    assert 0.25 <= took < 1.0  # bytes kept arriving: uvicorn alone would never close it


def test_a_keep_alive_client_trickling_its_next_request_is_closed_too() -> None:
    async def go() -> tuple[bytes, float]:
        async with serving(head_timeout=0.3) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await reader.readuntil(b"hi")

            async def trickle() -> None:
                for byte in b"GET / HTTP/1.1\r\nHost: x":
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            trickler = asyncio.create_task(trickle())
            took = await closed_after(reader, 3.0)
            trickler.cancel()
            writer.close()
            return first, took

    first, took = asyncio.run(go())
    assert first.startswith(b"HTTP/1.1 200")
    assert took < 1.0


def test_over_the_cap_the_longest_idle_connection_makes_room_for_a_fresh_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> tuple[list[bool], bytes]:
        async with serving(max_connections=3, head_timeout=30) as port:
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            for _, writer in idle:
                writer.write(b"G")
            await asyncio.sleep(0.1)
            answer = await get(port)  # the 4th connection: the oldest idle one goes
            closed = []
            for reader, writer in idle:
                try:
                    async with asyncio.timeout(0.5):
                        closed.append(await reader.read(1) == b"")
                except TimeoutError:
                    closed.append(False)
                writer.close()
            return closed, answer

    with caplog.at_level(logging.WARNING, logger="regmon.http"):
        closed, answer = asyncio.run(go())
    assert answer.startswith(b"HTTP/1.1 200") and b"\r\nhi\r\n" in answer
    assert closed == [True, False, False]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "HTTP: closed the longest idle connection for a new one "
            "(limit 3 open connections); 1 connections closed so far",
        )
    ]


def test_accept_errors_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        httpserver.install_accept_error_throttle(loop)
        error = OSError(24, "Too many open files")
        for _ in range(10_000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": error}
            )
        loop.call_exception_handler({"message": "something else"})

    with caplog.at_level(logging.INFO):
        asyncio.run(go())
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            "regmon.http",
            logging.ERROR,
            "HTTP: cannot accept connections: [Errno 24] Too many open files",
        ),
        ("asyncio", logging.ERROR, "something else"),
    ]


def test_the_fd_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = (
        "import resource\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from monitor.httpserver import raise_fd_limit\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    expected = str(hard if hard != resource.RLIM_INFINITY else 1 << 20)
    assert out == [expected, expected]
    assert soft >= 1024  # this machine runs the 1,100-client test


@pytest.mark.parametrize(
    ("limit", "cap"), [(1024, 768), (4096, 3072), (20000, 4096), (1 << 20, 4096), (300, 44)]
)
def test_connection_cap_keeps_a_reserve(limit: int, cap: int) -> None:
    assert httpserver.connection_cap(limit) == cap


def test_uvicorn_s_own_400_carries_the_given_headers() -> None:
    async def go() -> bytes:
        async with serving(headers={"X-Frame-Options": "DENY"}) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await reader.read()
            writer.close()
            return answer

    head = asyncio.run(go()).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 400 Bad Request"
    assert b"X-Frame-Options: DENY" in head
