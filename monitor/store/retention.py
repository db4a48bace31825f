"""Retention: old events (with their deliveries) and history deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, func, select

from monitor.store.models import deliveries as _DELIVERIES
from monitor.store.models import delivery_attempts as _DELIVERY_ATTEMPTS
from monitor.store.models import events as _EVENTS
from monitor.store.models import history as _HISTORY
from monitor.store.transactions import _translated, _write

__all__ = ["prune"]


@_translated
def prune(engine: Engine, older_than: datetime) -> int:
    """Delete events (with their deliveries) and history older than ``older_than``.

    Each tag keeps its latest history row however old, so its last known state
    stays visible. Returns the number of rows deleted.
    """
    old_events = select(_EVENTS.c.seq).where(_EVENTS.c.occurred_at < older_than)
    old_deliveries = select(_DELIVERIES.c.id).where(_DELIVERIES.c.event_seq.in_(old_events))
    latest_history = select(func.max(_HISTORY.c.id)).group_by(_HISTORY.c.image)
    deleted = 0
    with _write(engine) as conn:
        # Children first: no reliance on ON DELETE CASCADE being enforced.
        for stmt in (
            delete(_DELIVERY_ATTEMPTS).where(_DELIVERY_ATTEMPTS.c.delivery_id.in_(old_deliveries)),
            delete(_DELIVERIES).where(_DELIVERIES.c.event_seq.in_(old_events)),
            delete(_EVENTS).where(_EVENTS.c.occurred_at < older_than),
            delete(_HISTORY).where(
                _HISTORY.c.recorded_at < older_than, _HISTORY.c.id.not_in(latest_history)
            ),
        ):
            deleted += conn.execute(stmt).rowcount
    return deleted
