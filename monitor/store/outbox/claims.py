"""The webhook outbox: claim due deliveries, record attempts, recover after a crash.

``records.record_evaluations`` writes one ``pending`` delivery per
(event, webhook) in the transaction that writes the event. From there:

    pending ──claim──▶ sending ──2xx──────────────▶ delivered
       ▲                  │ ──final 4xx───────────▶ failed
       └──retry later─────┤ ──past max_retry_age──▶ dead
                          └ (crash: lease expires, or reset at start) ▶ pending

Claiming is two steps, portable to SQLite and PostgreSQL: select candidate
ids, then for each a conditional ``UPDATE ... WHERE id = :id AND (status =
'pending' OR (status = 'sending' AND claimed_until < :now))`` whose row count
must be 1. Whoever changes the row owns it; a concurrent claimer gets 0 rows
and skips it, so two dispatchers never send the same row. ``claimed_until``
is both the lease and the fencing token: a finished attempt is recorded only
``WHERE claimed_until = <the value we set>``, so a dispatcher whose lease ran
out and was re-claimed cannot overwrite the newer owner's outcome.

Order: a delivery is a candidate only when no delivery for the same webhook
and the same image with a lower ``event_seq`` is still ``pending`` or
``sending`` (a retry waiting for its time is ``pending``). Deliveries that
ended ``failed`` or ``dead`` no longer hold the queue.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import Engine, Select, and_, exists, func, insert, or_, select, update

from monitor.records import DeliveryStatus
from monitor.store.models import deliveries as _DELIVERIES
from monitor.store.models import delivery_attempts as _DELIVERY_ATTEMPTS
from monitor.store.models import events as _EVENTS
from monitor.store.transactions import _translated, _write
from monitor.text import clean

__all__ = [
    "ERROR_LIMIT",
    "WAITING",
    "ClaimedDelivery",
    "claim_due_deliveries",
    "finish_delivery",
    "kill_removed_webhooks",
    "release_claims",
    "reset_sending",
]


WAITING = DeliveryStatus.waiting()  # statuses that hold later events of the same tag back
ERROR_LIMIT = 500  # the error columns' size
_FINAL_OR_RETRY = frozenset(s.value for s in DeliveryStatus if s is not DeliveryStatus.SENDING)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this dispatcher now owns until ``claimed_until``."""

    id: int
    event_seq: int
    event_id: str
    event_type: str
    image: str
    webhook: str
    payload: Mapping[str, Any]
    attempts: int
    created_at: datetime
    claimed_until: datetime


class _Attempt(TypedDict, total=False):
    """How an attempt ended, as ``finish_delivery`` and ``finish_batch`` take it."""

    attempted_at: Required[datetime]
    status: Required[DeliveryStatus | str]
    status_code: int | None
    error: str | None
    latency_ms: float | None
    next_attempt_at: datetime | None
    attempted: bool


def _claimable(now: datetime) -> Any:
    return or_(
        _DELIVERIES.c.status == DeliveryStatus.PENDING,
        and_(_DELIVERIES.c.status == DeliveryStatus.SENDING, _DELIVERIES.c.claimed_until < now),
    )


@_translated
def claim_due_deliveries(
    engine: Engine,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    webhooks: Collection[str] | None = None,
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries, oldest event first, for ``lease``.

    Due: ``pending`` (or ``sending`` with an expired lease) with
    ``next_attempt_at <= now``, and not held back by an earlier delivery of
    the same webhook and image (see the module doc). ``webhooks`` restricts
    the claim to those webhook names. At most one delivery per (webhook,
    image) is returned.
    """
    earlier = _DELIVERIES.alias()
    earlier_event = _EVENTS.alias()
    held_back = exists(
        select(1)
        .select_from(earlier)
        .join(earlier_event, earlier_event.c.seq == earlier.c.event_seq)
        .where(
            earlier.c.webhook == _DELIVERIES.c.webhook,
            earlier_event.c.image == _EVENTS.c.image,
            earlier.c.event_seq < _DELIVERIES.c.event_seq,
            earlier.c.status.in_(WAITING),
        )
    )
    query = (
        select(_DELIVERIES.c.id)
        .join(_EVENTS, _EVENTS.c.seq == _DELIVERIES.c.event_seq)
        .where(
            _DELIVERIES.c.next_attempt_at <= now,
            _DELIVERIES.c.batch_id.is_(None),
            _claimable(now),
            ~held_back,
        )
        .order_by(_DELIVERIES.c.event_seq, _DELIVERIES.c.id)
        .limit(limit)
    )
    if webhooks is not None:
        if not webhooks:
            return []
        query = query.where(_DELIVERIES.c.webhook.in_(sorted(webhooks)))
    # Candidates are read outside the write transaction: nothing can put an earlier delivery
    # back into a waiting status (seqs only grow; delivered/failed/dead are final), so a
    # candidate stays in order, and the conditional UPDATE settles who owns it.
    with engine.connect() as conn:
        candidates = list(conn.scalars(query))
    if not candidates:
        return []
    until = now + lease
    claimed: list[int] = []
    with _write(engine) as conn:
        for delivery_id in candidates:
            result = conn.execute(
                update(_DELIVERIES)
                .where(
                    _DELIVERIES.c.id == delivery_id,
                    _DELIVERIES.c.next_attempt_at <= now,
                    _DELIVERIES.c.batch_id.is_(None),
                    _claimable(now),
                )
                .values(status=DeliveryStatus.SENDING, claimed_until=until, updated_at=now)
            )
            if result.rowcount == 1:
                claimed.append(delivery_id)
        if not claimed:
            return []
        rows = conn.execute(
            _claimed_rows()
            .where(_DELIVERIES.c.id.in_(claimed))
            .order_by(_DELIVERIES.c.event_seq, _DELIVERIES.c.id)
        ).all()
    return [_claimed(row, until) for row in rows]


@_translated
def finish_delivery(engine: Engine, delivery: ClaimedDelivery, **attempt: Unpack[_Attempt]) -> bool:
    """Record one attempt and move the delivery to ``status`` in one transaction.

    ``status``: ``delivered``, ``pending`` (a retry at ``next_attempt_at``),
    ``failed`` or ``dead``. Returns False (and writes nothing) when the claim
    was lost: the lease expired and another dispatcher owns the row now.
    ``attempted=False`` (a delivery given up without sending, e.g. its webhook
    was removed) records no attempt row and leaves the attempt count alone.
    """
    return _finish(engine, [delivery.id], delivery.claimed_until, **attempt)


@_translated
def release_claims(engine: Engine, deliveries: Sequence[ClaimedDelivery], now: datetime) -> int:
    """Give claimed deliveries back (``pending``, due now) without counting an attempt."""
    released = 0
    with _write(engine) as conn:
        for delivery in deliveries:
            result = conn.execute(
                update(_DELIVERIES)
                .where(_owned([delivery.id], delivery.claimed_until))
                .values(status=DeliveryStatus.PENDING, claimed_until=None, updated_at=now)
            )
            released += result.rowcount
    return released


@_translated
def reset_sending(
    engine: Engine, now: datetime, *, all_leases: bool = False, keep: Collection[int] = ()
) -> int:
    """Turn ``sending`` rows back into ``pending``; returns how many.

    By default only rows whose lease has expired. ``all_leases=True`` is for
    a dispatcher that begins to send as the only one (the one process on its
    database, or the leader that just took over, the one before it fenced out):
    every ``sending`` row but its own (``keep``, by id) is then a leftover of a
    process that died or lost the lead mid-send.
    """
    condition = _DELIVERIES.c.status == DeliveryStatus.SENDING
    if not all_leases:
        condition = and_(condition, _DELIVERIES.c.claimed_until < now)
    if keep:
        condition = and_(condition, _DELIVERIES.c.id.not_in(sorted(keep)))
    with _write(engine) as conn:
        result = conn.execute(
            update(_DELIVERIES)
            .where(condition)
            .values(status=DeliveryStatus.PENDING, claimed_until=None, updated_at=now)
        )
        return int(result.rowcount)


@_translated
def kill_removed_webhooks(
    engine: Engine, configured: Collection[str], now: datetime
) -> dict[str, int]:
    """Mark waiting deliveries of webhooks no longer configured ``dead``; count them per webhook.

    A ``sending`` row with a live lease is left to its owner.
    """
    orphaned = and_(_claimable(now), _DELIVERIES.c.webhook.not_in(sorted(configured)))
    with _write(engine) as conn:
        counts = {
            str(name): int(count)
            for name, count in conn.execute(
                select(_DELIVERIES.c.webhook, func.count())
                .where(orphaned)
                .group_by(_DELIVERIES.c.webhook)
            )
        }
        if counts:
            conn.execute(
                update(_DELIVERIES)
                .where(orphaned)
                .values(
                    status=DeliveryStatus.DEAD,
                    claimed_until=None,
                    last_error="webhook removed from config",
                    updated_at=now,
                )
            )
    return counts


class _Lost(Exception):
    """Rolls a write back: another claimer changed a row first."""


def _owned(ids: Sequence[int], claimed_until: datetime) -> Any:
    """The rows ``ids`` while still claimed under ``claimed_until`` (the fencing token)."""
    return and_(
        _DELIVERIES.c.id.in_(ids),
        _DELIVERIES.c.status == DeliveryStatus.SENDING,
        _DELIVERIES.c.claimed_until == claimed_until,
    )


def _finish(
    engine: Engine,
    ids: Sequence[int],
    claimed_until: datetime,
    *,
    attempted_at: datetime,
    status: DeliveryStatus | str,
    status_code: int | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
    next_attempt_at: datetime | None = None,
    attempted: bool = True,
) -> bool:
    """Finish an attempt of the deliveries ``ids`` (one, or a batch's members): all or none.

    False (nothing written) when a claim was lost; one attempt row per delivery.
    """
    values = _finished(
        status, attempted_at, status_code, error, latency_ms, next_attempt_at, attempted
    )
    status, error = values["status"], values["last_error"]
    try:
        with _write(engine) as conn:
            result = conn.execute(
                update(_DELIVERIES).where(_owned(ids, claimed_until)).values(values)
            )
            if result.rowcount != len(ids):
                raise _Lost
            if attempted:
                conn.execute(
                    insert(_DELIVERY_ATTEMPTS),
                    [
                        {
                            "delivery_id": delivery_id,
                            "attempted_at": attempted_at,
                            "status_code": status_code,
                            "error": error,
                            "latency_ms": latency_ms,
                        }
                        for delivery_id in ids
                    ],
                )
    except _Lost:
        return False
    return True


def _finished(
    status: DeliveryStatus | str,
    attempted_at: datetime,
    status_code: int | None,
    error: str | None,
    latency_ms: float | None,
    next_attempt_at: datetime | None,
    attempted: bool,
) -> dict[str, Any]:
    """The column values of a finished attempt, for one delivery or a whole batch."""
    if status not in _FINAL_OR_RETRY:
        raise ValueError(f"cannot finish a delivery as {status!r}")
    status = DeliveryStatus(status)
    if status is DeliveryStatus.PENDING and next_attempt_at is None:
        raise ValueError("a retry needs next_attempt_at")
    values: dict[str, Any] = {
        "status": status,
        "attempts": _DELIVERIES.c.attempts + (1 if attempted else 0),
        "claimed_until": None,
        "last_status_code": status_code,
        # One printable line whatever a receiver or channel said (PostgreSQL refuses NUL).
        "last_error": None if error is None else clean(error, ERROR_LIMIT),
        "last_latency_ms": latency_ms,
        "updated_at": attempted_at,
    }
    if status is DeliveryStatus.PENDING:
        values["next_attempt_at"] = next_attempt_at
    if status is DeliveryStatus.DELIVERED:
        values["delivered_at"] = attempted_at
    return values


def _claimed_rows() -> Select[Any]:
    """What a dispatcher needs of each claimed delivery: the row and its event."""
    return select(
        _DELIVERIES.c.id,
        _DELIVERIES.c.event_seq,
        _DELIVERIES.c.webhook,
        _DELIVERIES.c.attempts,
        _DELIVERIES.c.created_at,
        _EVENTS.c.id.label("event_id"),
        _EVENTS.c.type,
        _EVENTS.c.image,
        _EVENTS.c.payload,
    ).join(_EVENTS, _EVENTS.c.seq == _DELIVERIES.c.event_seq)


def _claimed(row: Any, until: datetime) -> ClaimedDelivery:
    """A row of ``_claimed_rows()`` as the dispatcher gets it."""
    return ClaimedDelivery(
        id=row.id,
        event_seq=row.event_seq,
        event_id=row.event_id,
        event_type=row.type,
        image=row.image,
        webhook=row.webhook,
        payload=dict(row.payload),
        attempts=row.attempts,
        created_at=row.created_at,
        claimed_until=until,
    )
