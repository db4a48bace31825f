"""Reads of what happened: a tag's history, and event payloads by time, type or image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from monitor.domain import Status
from monitor.store.engine import StoreError
from monitor.store.models import events as _EVENTS
from monitor.store.models import history as _HISTORY
from monitor.store.transactions import _translated
from monitor.wire import parse_timestamp

__all__ = ["HistoryRow", "UnknownEventError", "history_for", "list_events"]


class UnknownEventError(StoreError, LookupError):
    """``since`` named an event id that is not (or no longer) in the store."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"unknown event id {event_id!r} (never written, or pruned)")


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One change of a tag: decided status, and digests while present."""

    image: str
    recorded_at: datetime
    status: Status
    digest: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None


@_translated
def history_for(engine: Engine, image: str) -> list[HistoryRow]:
    """The changes of one tag, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_HISTORY).where(_HISTORY.c.image == image).order_by(_HISTORY.c.id)
        )
        return [
            HistoryRow(
                image=row.image,
                recorded_at=row.recorded_at,
                status=Status(row.status),
                digest=row.digest,
                platforms=dict(row.platforms),
                event_id=row.event_id,
            )
            for row in rows
        ]


@_translated
def list_events(
    engine: Engine,
    *,
    since: str | datetime | None = None,
    types: Sequence[str] | None = None,
    image: str | None = None,
    limit: int = 1000,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Event payloads (SPEC §6 body), oldest first.

    ``newest=True`` returns the *last* ``limit`` matching events (still oldest
    first), for timelines of one tag; the default pages forward from ``since``.

    ``since`` is an event id (the events written after it) or an aware datetime
    or RFC 3339 string (events that occurred after it). An id that is not stored
    raises ``UnknownEventError``.
    """
    order = _EVENTS.c.seq.desc() if newest else _EVENTS.c.seq
    query = select(_EVENTS.c.payload).order_by(order).limit(limit)
    if types:
        query = query.where(_EVENTS.c.type.in_(list(types)))
    if image is not None:
        query = query.where(_EVENTS.c.image == image)
    with engine.connect() as conn:
        if isinstance(since, str):
            since = _parse_time(since) or since
        if isinstance(since, datetime):
            query = query.where(_EVENTS.c.occurred_at > since)
        elif since is not None:
            seq = conn.scalar(select(_EVENTS.c.seq).where(_EVENTS.c.id == since))
            if seq is None:
                raise UnknownEventError(since)
            query = query.where(_EVENTS.c.seq > seq)
        payloads = [dict(payload) for payload in conn.scalars(query)]
    return payloads[::-1] if newest else payloads


def _parse_time(value: str) -> datetime | None:
    """An RFC 3339 time with an offset, else None (the string is an event id)."""
    try:
        return parse_timestamp(value)
    except ValueError:
        return None
