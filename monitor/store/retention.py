"""Retention: old events (with their deliveries) and history deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, func, select

from monitor.store.models import DeliveryAttemptModel, DeliveryModel, EventModel, HistoryModel
from monitor.store.transactions import _translated, _write

__all__ = ["prune"]


@_translated
def prune(engine: Engine, older_than: datetime) -> int:
    """Delete events (with their deliveries) and history older than ``older_than``.

    Each tag keeps its latest history row however old, so its last known state
    stays visible. Returns the number of rows deleted.
    """
    old_events = select(EventModel.seq).where(EventModel.occurred_at < older_than)
    old_deliveries = select(DeliveryModel.id).where(DeliveryModel.event_seq.in_(old_events))
    latest_history = select(func.max(HistoryModel.id)).group_by(HistoryModel.image)
    deleted = 0
    with _write(engine) as conn:
        # Children first: no reliance on ON DELETE CASCADE being enforced.
        for stmt in (
            delete(DeliveryAttemptModel).where(
                DeliveryAttemptModel.delivery_id.in_(old_deliveries)
            ),
            delete(DeliveryModel).where(DeliveryModel.event_seq.in_(old_events)),
            delete(EventModel).where(EventModel.occurred_at < older_than),
            delete(HistoryModel).where(
                HistoryModel.recorded_at < older_than, HistoryModel.id.not_in(latest_history)
            ),
        ):
            deleted += conn.execute(stmt).rowcount
    return deleted
