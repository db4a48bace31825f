"""Blocking store work off the event loop that a cancelled caller still lets finish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["in_thread"]

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread``, except that a caller cancelled meanwhile (``stop()`` cancels
    the background tasks) waits for the thread before it ends: cancelling never stops the
    thread, and one that still holds a database connection when ``stop()`` disposes the
    engine leaves it to the garbage collector (psycopg's ResourceWarning)."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise
