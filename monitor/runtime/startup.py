"""Start-up steps of the service: opening the store (``open_store``), a start-up that a
stop request can end (SIGTERM while ``start()`` waits for the database), and the cyclic
garbage collector paused while the process builds what it keeps (``pause_collector``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Config
    from monitor.domain import RegistryState, TagState
    from monitor.runtime.replica import Replica
    from monitor.store.lockfile import ProcessLock

__all__ = [
    "OpenStore",
    "open_store",
    "pause_collector",
    "settle_collector",
    "start_unless_stopped",
]

log = logging.getLogger("regmon")


def pause_collector() -> None:
    """No cyclic garbage collection until ``settle_collector``: for the start-up of the
    process (``regmon run``), never for a service in someone else's process.

    Start-up builds the long-lived data of every watch (config, watches, schedule, states:
    at 50,000 watches some 400,000 tracked objects); each full collection on the way
    rescans all that is built so far, ~40 % of the start's CPU. Start-up itself leaves
    ~0.8 MB of cycles (SQLAlchemy's schema events, closures), whatever the watch count.
    """
    gc.disable()


def settle_collector() -> None:
    """Collect again, with what start-up built out of every later collection (frozen:
    freed by reference counting as before, never rescanned; its ~0.8 MB of cycles stay,
    where a collection now would stall the loop ~0.3 s at 50,000 watches)."""
    gc.freeze()
    gc.enable()


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


@dataclass(frozen=True, slots=True)
class OpenStore:
    """The database as ``open_store`` leaves it: upgraded, its lease taken part in, its
    states loaded."""

    engine: Engine
    writer: Engine  # the leader's (fenced) writes go through this one
    lock: ProcessLock | None  # SQLite: one replica per file
    stored: dict[str, tuple[TagState, int]]
    registries: dict[str, RegistryState]


async def open_store(
    config: Config, replica: Replica, on_failure: contextlib.ExitStack
) -> OpenStore:
    """Open the store in the order start-up needs: an empty file refused, the SQLite lock,
    the engine, the wait for the database, the upgrade, the lease, then the states.

    What it opens is closed by ``on_failure`` if start-up fails later on.
    """
    from monitor.store.engine import make_engine, refuse_empty_sqlite_file, upgrade
    from monitor.store.health import wait_for_database
    from monitor.store.lockfile import hold_sqlite_lock

    refuse_empty_sqlite_file(config.database)
    lock = hold_sqlite_lock(config.database)
    if lock is not None:
        on_failure.callback(lock.release)
    lease = replica.lease_seconds()
    engine = make_engine(config.database, **replica.engine_options(lease))
    on_failure.callback(engine.dispose)
    await wait_for_database(engine)
    await asyncio.to_thread(upgrade, engine)
    writer = await replica.open(engine, lease, on_failure)
    stored, registries = await replica.load(engine)
    return OpenStore(engine, writer, lock, stored, registries)
