"""Start-up that a stop request can end: SIGTERM while ``start()`` waits for the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_unless_stopped"]

log = logging.getLogger("regmon")


async def start_unless_stopped(start: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``start``; True once it is done, False if ``stop`` was set first (it is cancelled:
    what it had opened, it closes on the way out). ``start``'s own errors propagate."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        starting.result()
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    log.info("regmon stopped before it started")
    return False
