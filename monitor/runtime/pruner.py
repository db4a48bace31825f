"""The pruner: deletes events, deliveries and history older than ``retention``, hourly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from monitor.runtime.failure import reason

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["PRUNE_INTERVAL", "Pruner"]

log = logging.getLogger("regmon")

PRUNE_INTERVAL: Final = 3600.0


class Pruner:
    """Runs the store's ``prune`` every ``interval`` with the retention in force at that time."""

    def __init__(
        self,
        engine: Engine,
        retention: Callable[[], float],
        *,
        interval: float = PRUNE_INTERVAL,
        may_run: Callable[[], bool] | None = None,
    ) -> None:
        self._engine = engine
        self._may_run = may_run  # the leader prunes; followers leave the store to it
        self._retention = retention  # seconds; read each time, since a reload may change it
        self._interval = interval

    async def run(self) -> None:
        from monitor.store.repository import prune
        from monitor.threads import in_thread

        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self._retention())
            if self._may_run is not None and not self._may_run():
                await asyncio.sleep(self._interval)
                continue
            try:
                deleted = await in_thread(prune, self._engine, cutoff)
                if deleted:
                    log.info("pruned %d rows older than %s", deleted, cutoff.date())
            except Exception as exc:
                log.warning("pruning old rows failed: %s; will retry in an hour", reason(exc))
            await asyncio.sleep(self._interval)
