"""What a dispatcher claims and sends: one delivery, or a batch of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor.notify.notifier import batch_id

if TYPE_CHECKING:
    from monitor.store.outbox import ClaimedBatch, ClaimedDelivery

    _Unit = ClaimedDelivery | ClaimedBatch

__all__ = ["delivery_id"]


def delivery_id(event_ids: Sequence[str]) -> str:
    """The ``webhook-id`` of a delivery of ``event_ids``: the event's own id for one,
    ``batch_id`` for several (as ``Delivery.of`` names them)."""
    return event_ids[0] if len(event_ids) == 1 else batch_id(event_ids)


def _members(unit: _Unit) -> tuple[ClaimedDelivery, ...]:
    from monitor.store.outbox import ClaimedBatch

    return unit.members if isinstance(unit, ClaimedBatch) else (unit,)


def _label(unit: _Unit) -> str:
    """The delivery's id: the batch id, or the event id."""
    from monitor.store.outbox import ClaimedBatch

    return unit.batch_id if isinstance(unit, ClaimedBatch) else unit.event_id


def _what(unit: _Unit) -> str:
    from monitor.store.outbox import ClaimedBatch

    if isinstance(unit, ClaimedBatch):
        return f"batch {unit.batch_id} ({len(unit.members)} events)"
    return f"{unit.event_type} {unit.image} (event {unit.event_id})"
