"""Start-up steps of the service: opening the store (``open_store``), a start-up that a
stop request can end (SIGTERM while ``start()`` waits for the database), the cyclic
garbage collector paused while the process builds what it keeps (``pause_collector``),
and the C allocator told to give large freed blocks back (``return_large_blocks``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Config
    from monitor.records import RegistryState, TagState
    from monitor.runtime.replica import Replica
    from monitor.store.lockfile import ProcessLock

__all__ = [
    "OpenStore",
    "open_store",
    "pause_collector",
    "return_large_blocks",
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


# glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGE_BLOCK = 128 * 1024  # glibc's own starting value for both


def return_large_blocks() -> None:
    """Keep glibc's thresholds for giving memory back at their starting values, for the
    life of ``regmon run`` (not for a service in someone else's process).

    By default glibc raises its mmap threshold to the size of each mmap'd block freed
    (up to 32 MiB): after the first ``/metrics`` scrape has freed its buffers (8 MB at
    10,000 watches), blocks of that size come from the heap instead and stay with the
    process when freed. Measured at 10,000 watches, four scrapes: RSS +32 MiB by default,
    +8 MiB (the label text kept between scrapes) with the thresholds fixed. Setting a
    threshold also turns that adjustment off. ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` in the environment is the operator's choice and is left as
    it is; a C library without ``mallopt`` (not glibc) is left alone too.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)
    mallopt(_M_TRIM_THRESHOLD, _LARGE_BLOCK)


def settle_collector() -> None:
    """Collect again, with what start-up built out of every later collection (frozen:
    freed by reference counting as before, never rescanned; its ~0.8 MB of cycles stay,
    where a collection now would stall the loop ~0.3 s at 50,000 watches).

    Only where the collector was paused (``pause_collector``, or the process entry in
    ``monitor.__main__``): a collector someone else runs is left as it is.
    """
    if gc.isenabled():
        return
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
    from monitor.threads import in_thread

    # A SIGTERM meanwhile lets the migration's transaction end before the engine closes.
    await in_thread(upgrade, engine)
    writer = await replica.open(engine, lease, on_failure)
    stored, registries = await replica.load(engine)
    return OpenStore(engine, writer, lock, stored, registries)
