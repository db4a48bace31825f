"""The PostgreSQL lease coordinator: one replica leads, the others follow and take over.

``LeaseCoordinator`` implements the coordinator port (``monitor.runtime.leader``)
over the ``leases`` row (``monitor.store.lease``). Its loop tries every
``lease / 3``: a follower to acquire the lease (free once expired), the leader
to renew it.

Being the leader is counted on this process's monotonic clock from the moment
the last successful renewal was *sent*: ``is_leader()`` turns false at
``sent + lease - margin``. The database set the expiry from its own clock
while handling that request, so later than ``sent + lease``: this replica
stops checking, recording and delivering before any other can acquire the
lease, whatever the two clocks say (only their rates matter, and the margin
covers those). A process that was frozen (SIGSTOP, a VM pause) past its lease
sees that at once when it runs again; and should a write still be on its way,
the fence in the database refuses it (``monitor.store.lease``).

A replica that takes the lead hears whether anyone else led since it last did
(``on_change(leading, fresh)``): if not (the same holder re-acquiring after a
database outage, with the next epoch), what it holds in memory is still what
the store holds; if so, it must load the store's state first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from monitor.store.engine import error_line, is_database_error

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.store.lease import Grant

__all__ = ["DEFAULT_LEASE", "LeaseCoordinator", "holder_name", "session_options"]

log = logging.getLogger("regmon")

DEFAULT_LEASE: Final = 15.0
RELEASE_WAIT: Final = 2.0  # seconds a clean stop waits to hand the lease over


def holder_name() -> str:
    """This process among the replicas: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def session_options(lease: float) -> dict[str, Any]:
    """``make_engine`` arguments for the writers' PostgreSQL sessions of a replica.

    A leader frozen inside a write transaction holds the lease row's share lock
    (and the state lock); the server ends such a session once it has been idle
    in its transaction for half a lease, so the next leader is not held up.
    """
    idle_ms = int(max(lease / 2, 1.0) * 1000)
    return {"connect_args": {"options": f"-c idle_in_transaction_session_timeout={idle_ms}"}}


def _lease_engine_options(lease: float) -> dict[str, Any]:
    # The lease's own small pool: renewals never queue behind the writers, and neither a
    # server that does not answer nor a row lock holds one up past its turn.
    wait_ms = int(max(lease / 3, 0.5) * 1000)
    return {
        "pool_size": 1,
        "max_overflow": 1,
        "pool_pre_ping": True,
        "connect_args": {
            "connect_timeout": max(2, int(lease / 3)),
            "options": f"-c lock_timeout={wait_ms} -c statement_timeout={2 * wait_ms}",
        },
    }


class LeaseCoordinator:
    """``is_leader()``/``epoch`` from the database lease; ``start()`` keeps it.

    The lease is kept by a thread of its own, so a busy event loop (a start-up,
    a large reload) never costs the lead; what a change of role means for the
    service runs in the event loop (``on_change``), one change at a time, in order.
    """

    def __init__(
        self,
        url: str,
        lease: float = DEFAULT_LEASE,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from monitor.store.engine import make_engine

        self.lease = lease
        self.renew_every = lease / 3
        self.margin = lease / 5
        self.holder = holder or holder_name()
        self._engine: Engine = make_engine(url, **_lease_engine_options(lease))
        self._clock = clock
        self._epoch: int | None = None  # while leading
        self._last_epoch: int | None = None  # the epoch this process last led under
        self._deadline = 0.0
        self._failures = 0
        self._leader_seen: str | None = None  # the other holder last logged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changes: asyncio.Queue[tuple[bool, bool]] | None = None
        self._consumer: asyncio.Task[None] | None = None

    # -- the port ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._epoch is not None and self._clock() < self._deadline

    @property
    def epoch(self) -> int:
        return self._epoch or 0

    def lead(self) -> tuple[str, int] | None:
        """``(holder, epoch)`` while leading, for the write fence; None otherwise."""
        epoch = self._epoch
        if epoch is None or not self.is_leader():
            return None
        return self.holder, epoch

    # -- keeping it ----------------------------------------------------------------------

    async def step(self) -> tuple[bool, bool] | None:
        """One attempt now (acquire or renew); ``(leading, fresh)`` when the role changed."""
        from monitor.threads import in_thread

        # Bounded by the lease engine's connect and statement timeouts.
        return await in_thread(self._step)

    def start(self, on_change: Callable[[bool, bool], Awaitable[None]]) -> None:
        """Keep the lease (or wait for it) in a thread until ``close()``; each change of
        role is handed to ``on_change`` in the running event loop."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue[tuple[bool, bool]] = asyncio.Queue()
        self._changes = changes

        async def consume() -> None:
            while True:
                change = await changes.get()
                try:
                    await on_change(*change)
                except Exception:  # the next change (or renewal) must still be heard
                    log.exception("taking the role change %r failed", change)

        def tell(change: tuple[bool, bool]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                loop.call_soon_threadsafe(changes.put_nowait, change)

        self._consumer = asyncio.create_task(consume(), name="regmon-lease")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._keep, args=(tell,), name="regmon-lease", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop keeping it; hand the lease over when leading; close the lease's connections."""
        await self._stop_thread()
        epoch, self._epoch = self._epoch, None
        if epoch is not None:
            from monitor.store.lease import release
            from monitor.threads import in_thread

            try:
                async with asyncio.timeout(RELEASE_WAIT):
                    await in_thread(release, self._engine, self.holder, epoch)
                log.info("lease released: another replica may lead at once")
            except Exception as exc:
                log.warning("could not release the lease (it expires on its own): %s", _reason(exc))
        self._engine.dispose()

    def dispose(self) -> None:
        """Stop keeping it and close the lease's connections without a word to the database
        (a start that failed: the lease expires on its own); ``close()`` otherwise."""
        self._stop.set()
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None
        self._epoch = None
        self._engine.dispose()

    async def _stop_thread(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # A renewal in progress ends within its statement or connect timeout.
            await asyncio.to_thread(thread.join, self.lease + 5.0)
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None

    # -- inside (the lease's thread) -----------------------------------------------------

    def _keep(self, tell: Callable[[tuple[bool, bool]], None]) -> None:
        while not self._stop.is_set():
            began = self._clock()
            change = self._step()
            if change is not None:
                tell(change)
            until = began + self.renew_every
            if self._epoch is not None:
                until = min(until, self._deadline)
            if self._stop.wait(max(until - self._clock(), 0.0)):
                return
            if self._epoch is not None and not self.is_leader():
                tell(self._lost("the lease was not renewed in time"))

    def _step(self) -> tuple[bool, bool] | None:
        from monitor.store.lease import acquire, renew

        if self._epoch is not None and not self.is_leader():
            return self._lost("the lease was not renewed in time")  # the next step acquires
        sent = self._clock()
        leading = self._epoch
        try:
            if leading is not None:
                renewed = renew(self._engine, self.holder, leading, self.lease)
            else:
                grant = acquire(self._engine, self.holder, self.lease)
        except Exception as exc:
            self._failed(exc)
            if self._epoch is not None and not self.is_leader():
                return self._lost(f"cannot renew the lease: {_reason(exc)}")
            return None
        self._recovered()
        if leading is None:
            return self._granted(grant, sent)
        if not renewed:
            return self._lost("another replica holds the lease now")
        if not self._clock() < sent + self.lease - self.margin:
            return self._lost("the renewal took longer than the lease allows")
        self._deadline = sent + self.lease - self.margin
        return None

    def _granted(self, grant: Grant, sent: float) -> tuple[bool, bool] | None:
        if grant.epoch is None:
            if grant.holder != self._leader_seen:
                self._leader_seen = grant.holder
                log.info("following: %s leads (lease epoch %d)", grant.holder, grant.held_epoch)
            return None
        fresh = not (grant.holder == self.holder and grant.held_epoch == self._last_epoch)
        self._deadline = sent + self.lease - self.margin
        self._epoch = self._last_epoch = grant.epoch
        self._leader_seen = None
        before = "first" if not grant.holder else f"after {grant.holder}" if fresh else "again"
        log.info(
            "leading (lease epoch %d, %s; %gs lease renewed every %gs)",
            grant.epoch,
            before,
            self.lease,
            self.renew_every,
        )
        return True, fresh

    def _lost(self, why: str) -> tuple[bool, bool]:
        self._epoch = None
        log.warning("lost the lead: %s; stopped checking, recording and delivering", why)
        return False, False

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures & (self._failures - 1) == 0:  # 1st, 2nd, 4th …: a backoff, not a flood
            log.warning(
                "lease: the database did not answer (%d in a row): %s",
                self._failures,
                _reason(exc),
                exc_info=None if is_database_error(exc) else exc,
            )

    def _recovered(self) -> None:
        if self._failures:
            log.info("lease: the database answers again after %d failures", self._failures)
            self._failures = 0


def _reason(exc: BaseException) -> str:
    return error_line(exc) if is_database_error(exc) else repr(exc)
