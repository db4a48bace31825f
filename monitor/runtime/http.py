"""The service's HTTP server: its listening socket and the uvicorn server on it."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError, RegmonError

if TYPE_CHECKING:
    import uvicorn

    from monitor.config import Config

__all__ = ["bind", "make_server", "serve"]

log = logging.getLogger("regmon")


def bind(config: Config) -> socket.socket:
    """The listening socket for ``listen``; a ConfigError naming it when it cannot be had."""
    host, port = config.listen.host, config.listen.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"listen {config.listen}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, config: Config) -> uvicorn.Server:
    """A server for ``app`` on ``listen``, its connections capped by the descriptor limit."""
    from monitor import httpserver
    from monitor.web.app import SECURITY_HEADERS

    # Slow or idle clients must not take the descriptors that checks and the database need.
    limit = httpserver.raise_fd_limit()
    httpserver.install_accept_error_throttle(asyncio.get_running_loop())
    cap = httpserver.connection_cap(limit)
    log.debug("HTTP: up to %d connections (file descriptor limit %d)", cap, limit)
    return httpserver.make_server(
        app, config.listen.host, config.listen.port, max_connections=cap, headers=SECURITY_HEADERS
    )


async def serve(server: uvicorn.Server, sock: socket.socket, config: Config) -> asyncio.Task[None]:
    """Serve on ``sock``; the serving task once the server has started (RegmonError if it
    ends before)."""
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="regmon-http")
    while not server.started:
        if serving.done():
            # Retrieved here: nobody awaits a server task that never started.
            failed = None if serving.cancelled() else serving.exception()
            raise RegmonError(f"listen {config.listen}: the HTTP server did not start") from failed
        await asyncio.sleep(0.01)
    return serving
