"""Where each delivery of an event stands, for the API's event history."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from monitor.domain import DeliveryStatus
from monitor.store.models import DeliveryModel, EventModel
from monitor.store.transactions import _translated

__all__ = ["DeliveryState", "delivery_states"]


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where one delivery of one event stands (for the API's event history)."""

    webhook: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@_translated
def delivery_states(engine: Engine, event_ids: Collection[str]) -> dict[str, list[DeliveryState]]:
    """``{event id: [DeliveryState per webhook]}`` for the given events (absent: none)."""
    if not event_ids:
        return {}
    query = (
        select(
            EventModel.id.label("event_id"),
            DeliveryModel.webhook,
            DeliveryModel.status,
            DeliveryModel.attempts,
            DeliveryModel.last_status_code,
            DeliveryModel.last_error,
            DeliveryModel.next_attempt_at,
            DeliveryModel.delivered_at,
        )
        .join(EventModel, EventModel.seq == DeliveryModel.event_seq)
        .where(EventModel.id.in_(sorted(event_ids)))
        .order_by(DeliveryModel.event_seq, DeliveryModel.webhook)
    )
    out: dict[str, list[DeliveryState]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.event_id, []).append(
                DeliveryState(
                    webhook=row.webhook,
                    status=DeliveryStatus(row.status),
                    attempts=row.attempts,
                    last_status_code=row.last_status_code,
                    last_error=row.last_error,
                    next_attempt_at=(
                        row.next_attempt_at if row.status == DeliveryStatus.PENDING else None
                    ),
                    delivered_at=row.delivered_at,
                )
            )
    return out
