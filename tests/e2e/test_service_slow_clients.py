"""Slow-header clients cannot take the HTTP port down (issue 9 item 2).

The service runs under RLIMIT_NOFILE 1024/1024, as on a default Linux box;
1,100 clients each send a header byte every 5 s and re-open when dropped,
as an attacker would. A fresh client must get ``/healthz`` all along, and the
log must stay short.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from pathlib import Path

import httpx
from support.service import RegmonProcess

SLOW_CLIENTS = 1100
ATTACK_SECONDS = 13.0  # past one head timeout (10 s)
BYTE_EVERY = 5.0


class SlowClients:
    """``count`` sockets that trickle a request head, re-opened when the server closes them."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self.reopened = 0
        for _ in range(count):
            self.socks.append(self._open())

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        sock.send(b"G")
        return sock

    def reopen_closed(self) -> None:
        """Re-open every socket the server has closed (readable: EOF or reset)."""
        poller = select.poll()
        by_fd = {sock.fileno(): index for index, sock in enumerate(self.socks)}
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        for fd, _ in poller.poll(0):
            index = by_fd[fd]
            sock = self.socks[index]
            try:
                closed = sock.recv(1024) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                sock.close()
                self.socks[index] = self._open()
                self.reopened += 1

    def trickle(self) -> None:
        for sock in self.socks:
            try:
                sock.send(b"E")
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EAGAIN):
                    raise

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def test_healthz_answers_a_fresh_client_while_1100_slow_clients_are_connected(
    tmp_path: Path,
) -> None:
    with RegmonProcess("watch: []\n", tmp_path, nofile=1024) as svc:
        before = len(svc.log_text().splitlines())
        attack = SlowClients(svc.port, SLOW_CLIENTS)
        probes: list[float] = []
        try:
            began = time.monotonic()
            next_byte = began + BYTE_EVERY
            # At least 10 probes however loaded the machine is (each must answer within 3 s).
            while time.monotonic() - began < ATTACK_SECONDS or len(probes) < 10:
                attack.reopen_closed()
                if time.monotonic() >= next_byte:
                    attack.trickle()
                    next_byte += BYTE_EVERY
                svc.assert_alive()
                started = time.monotonic()
                with httpx.Client(timeout=3.0) as fresh:
                    response = fresh.get(f"{svc.url}/healthz")
                assert response.status_code == 200, response.text
                assert response.json() == {"status": "ok"}
                probes.append(time.monotonic() - started)
                time.sleep(0.5)
            assert svc.get("/api/v1/images").status_code == 200
            # uvicorn's own 400 for an unparsable request has the security headers too.
            with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as bad:
                bad.sendall(b"NOT HTTP\r\n\r\n")
                answer = bad.makefile("rb").read()
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"\r\nx-content-type-options: nosniff\r\n" in answer
        finally:
            attack.close()
        # Every slow client was dropped at least once (cap or head timeout) and came back.
        assert attack.reopened >= SLOW_CLIENTS
        svc.stop()
        lines = svc.log_text().splitlines()[before:]
    assert "out of system resource" not in "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)
    assert len(lines) < 50, "\n".join(lines)
    assert any("HTTP: closed the longest idle connection for a new one" in line for line in lines)
