"""The database as reads see it: outages told apart from bugs, said once, waited for at start.

An outage (a server that is down or restarting, a connection cut, SQLite's
lock held past the busy timeout) is the database's doing: the API answers 503
with one line, ``regmon_database_up`` turns 0, and the log says it when it
begins and when it ends, never per request. Anything else is a bug of ours and
keeps its 500 and its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Final

import sqlalchemy.exc
from sqlalchemy import Engine, text

from monitor.store.engine import DatabaseUnavailable, StoreError, error_line, redact_url

__all__ = [
    "START_BACKOFF_CAP",
    "START_BACKOFF_FIRST",
    "ReadHealth",
    "is_outage",
    "wait_for_database",
]

log = logging.getLogger("regmon")

START_BACKOFF_FIRST: Final = 1.0  # seconds before the second attempt to reach the database
START_BACKOFF_CAP: Final = 30.0  # seconds between attempts at most


# The sqlite3 messages of a database that cannot be used right now.
_SQLITE_OUTAGES: Final = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used right now (not a bug, not bad SQL)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, StoreError):  # the store's one-line wrapper of the driver's error
        return exc.__cause__ is not None and is_outage(exc.__cause__)
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError) and isinstance(exc.orig, sqlite3.Error):
        # sqlite3 raises OperationalError for bad SQL and missing tables too: bugs, not outages.
        message = str(exc.orig).lower()
        return any(sign in message for sign in _SQLITE_OUTAGES)
    return isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.DisconnectionError
        | sqlalchemy.exc.TimeoutError,  # the pool's: every connection is stuck on the outage
    )


class ReadHealth:
    """Whether the last read of the database worked; says a change once, both ways.

    ``on_change(up)`` feeds ``regmon_database_up``. Thread-safe: reads run in
    worker threads.
    """

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._failing: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failing

    def failed(self, exc: BaseException) -> str:
        """Record a failed read; the one-line reason for a 503 body."""
        reason = f"database unavailable: {error_line(exc)}"
        with self._lock:
            first = self._failing is None
            self._failing = reason
        if first:
            log.warning("database reads fail: %s; API reads answer 503 until it is back", reason)
        if self._on_change is not None:
            self._on_change(False)
        return reason

    def ok(self) -> None:
        """Record a read that worked."""
        with self._lock:
            was, self._failing = self._failing, None
        if was is not None:
            log.info("database reads work again")
        if self._on_change is not None:
            self._on_change(True)


def _probe(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def wait_for_database(
    engine: Engine,
    *,
    first: float = START_BACKOFF_FIRST,
    cap: float = START_BACKOFF_CAP,
) -> None:
    """Return once ``engine`` answers; until then one log line per attempt, at a growing
    interval (``first`` doubled up to ``cap``). Cancel it to give up (SIGTERM).

    Only a database server is waited for: a SQLite file either opens or it does
    not, and what stops it (a path, a permission) is the user's to fix, at once.
    """
    if engine.dialect.name == "sqlite":
        return
    delay = first
    attempt = 0
    while True:
        attempt += 1
        try:
            await asyncio.to_thread(_probe, engine)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if not is_outage(exc):
                return  # not a matter of waiting: the migration says what it is
            log.warning(
                "database %s unreachable (attempt %d): %s; waiting for it, next attempt in %.0fs",
                redact_url(engine.url),
                attempt,
                error_line(exc),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)
            continue
        if attempt > 1:
            log.info("database %s reachable after %d attempts", redact_url(engine.url), attempt)
        return
