"""Where each delivery of an event stands, for the API's event history."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from monitor.records import DeliveryStatus
from monitor.store.models import deliveries as _DELIVERIES
from monitor.store.models import events as _EVENTS
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
            _EVENTS.c.id.label("event_id"),
            _DELIVERIES.c.webhook,
            _DELIVERIES.c.status,
            _DELIVERIES.c.attempts,
            _DELIVERIES.c.last_status_code,
            _DELIVERIES.c.last_error,
            _DELIVERIES.c.next_attempt_at,
            _DELIVERIES.c.delivered_at,
        )
        .join(_EVENTS, _EVENTS.c.seq == _DELIVERIES.c.event_seq)
        .where(_EVENTS.c.id.in_(sorted(event_ids)))
        .order_by(_DELIVERIES.c.event_seq, _DELIVERIES.c.webhook)
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
