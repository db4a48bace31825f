"""The store reads behind the history and events views, shared by the API and the CLI.

Synchronous, like the store: the API runs them in ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.web.views import history_body, with_deliveries

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["read_events", "read_history"]


def read_events(
    engine: Engine,
    *,
    since: str | datetime | None = None,
    types: Sequence[str] | None = None,
    image: str | None = None,
    limit: int = 1000,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Event payloads with their deliveries (``repository.list_events`` tells the order);
    raises ``repository.UnknownEventError`` for a ``since`` id that is not stored."""
    from monitor.store import repository
    from monitor.store.outbox import delivery_states

    payloads = repository.list_events(
        engine, since=since, types=types, image=image, limit=limit, newest=newest
    )
    # ONE query for the deliveries of the whole page.
    ids = [payload["id"] for payload in payloads if isinstance(payload.get("id"), str)]
    return with_deliveries(payloads, delivery_states(engine, ids))


def read_history(engine: Engine, key: str) -> dict[str, Any]:
    """The history body of the tag ``key``: its changes and its newest events."""
    from monitor.store import repository

    rows = repository.history_for(engine, key)
    return history_body(key, rows, read_events(engine, image=key, newest=True))
