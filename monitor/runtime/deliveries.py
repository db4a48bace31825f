"""The webhook side of the service: the dispatcher and an HTTP client of its own.

Webhooks get their own HTTP client: a slow receiver shares nothing with checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Config
    from monitor.metrics import Metrics

__all__ = ["STOP_SEND_MARGIN", "Deliveries"]

# Stop: a webhook send in flight gets its whole timeout plus this, so an answered
# delivery is recorded as delivered and never sent again after the restart.
STOP_SEND_MARGIN = 2.0


class Deliveries:
    """Claims and sends the outbox's deliveries while ``may_send()`` holds."""

    def __init__(
        self,
        engine: Engine,
        config: Callable[[], Config],
        metrics: Metrics | None,
        *,
        may_send: Callable[[], bool],
    ) -> None:
        import httpx

        from monitor.notify.dispatcher import Dispatcher
        from monitor.registry.transport import default_transport_factory

        self._config = config
        self._http = httpx.AsyncClient(transport=default_transport_factory(True))
        self._dispatcher = Dispatcher(engine, config, self._http, metrics, may_send=may_send)

    def start(self) -> None:
        self._dispatcher.start()

    def wakeup(self) -> None:
        """New deliveries were written: claim them now rather than at the next poll."""
        self._dispatcher.wakeup()

    def stop(self) -> asyncio.Task[None]:
        """Stop claiming deliveries; sends in flight may finish within their timeout."""
        from monitor.notify.dispatcher import STOP_GRACE

        timeouts = [hook.timeout for hook in self._config().webhooks]
        grace = max([STOP_GRACE, *(t + STOP_SEND_MARGIN for t in timeouts)])
        return asyncio.create_task(self._dispatcher.stop(grace), name="regmon-webhooks-stop")

    async def aclose(self) -> None:
        await self._http.aclose()
