"""Batches (a webhook's ``batch:`` window): form one, claim it whole, finish it whole."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Unpack

from sqlalchemy import Engine, and_, exists, func, or_, select, update

from monitor.records import DeliveryStatus
from monitor.store.models import deliveries as _DELIVERIES
from monitor.store.models import events as _EVENTS
from monitor.store.outbox.claims import (
    WAITING,
    ClaimedDelivery,
    _Attempt,
    _claimable,
    _claimed,
    _claimed_rows,
    _finish,
    _Lost,
)
from monitor.store.transactions import _translated, _write

__all__ = ["ClaimedBatch", "claim_due_batches", "finish_batch", "form_batch"]


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    """The deliveries of one batch (oldest event first), owned until ``claimed_until``.

    Sent as one delivery under ``batch_id``; every member moves together, so
    they share their attempts, their next try and their outcome.
    """

    webhook: str
    batch_id: str
    members: tuple[ClaimedDelivery, ...]
    claimed_until: datetime

    @property
    def attempts(self) -> int:
        return max(member.attempts for member in self.members)

    @property
    def created_at(self) -> datetime:
        return min(member.created_at for member in self.members)


@_translated
def form_batch(
    engine: Engine,
    webhook: str,
    now: datetime,
    window: timedelta,
    limit: int,
    name: Callable[[Sequence[str]], str],
) -> str | None:
    """Close the oldest open window of ``webhook`` if it has passed; the batch id, or None.

    The open window holds the webhook's ``pending`` deliveries not yet in a
    batch; it started at the oldest one's ``created_at``. Once ``window`` has
    passed since then, the deliveries created within it (at most ``limit``,
    oldest event first) get one ``batch_id`` (``name`` of their event ids) in
    one transaction, so a restart finds the same batch under the same id.
    """
    query = (
        select(_DELIVERIES.c.id, _DELIVERIES.c.created_at, _EVENTS.c.id.label("event_id"))
        .join(_EVENTS, _EVENTS.c.seq == _DELIVERIES.c.event_seq)
        .where(
            _DELIVERIES.c.webhook == webhook,
            _DELIVERIES.c.status == DeliveryStatus.PENDING,
            _DELIVERIES.c.batch_id.is_(None),
        )
        .order_by(_DELIVERIES.c.event_seq, _DELIVERIES.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows or rows[0].created_at + window > now:
        return None
    closes = rows[0].created_at + window
    members = []
    for row in rows:
        if row.created_at >= closes:
            break
        members.append(row)
    key = name([row.event_id for row in members])
    try:
        with _write(engine) as conn:
            result = conn.execute(
                update(_DELIVERIES)
                .where(
                    _DELIVERIES.c.id.in_([row.id for row in members]),
                    _DELIVERIES.c.status == DeliveryStatus.PENDING,
                    _DELIVERIES.c.batch_id.is_(None),
                )
                .values(batch_id=key, next_attempt_at=now, updated_at=now)
            )
            if result.rowcount != len(members):
                raise _Lost
    except _Lost:
        return None
    return key


@_translated
def claim_due_batches(
    engine: Engine,
    now: datetime,
    lease: timedelta,
    *,
    webhooks: Collection[str],
    limit: int = 1,
) -> list[ClaimedBatch]:
    """Claim up to ``limit`` due batches of ``webhooks``, oldest first, for ``lease``.

    Due: every member ``pending`` (or ``sending`` with an expired lease) with
    ``next_attempt_at <= now``, and no delivery of the same webhook outside the
    batch with an earlier event still waiting: a batching webhook keeps the
    order of all its events, so per-tag order holds too. A batch is claimed
    whole (one conditional UPDATE whose row count must match) or not at all.
    """
    if not webhooks:
        return []
    earlier = _DELIVERIES.alias()
    held_back = exists(
        select(1)
        .select_from(earlier)
        .where(
            earlier.c.webhook == _DELIVERIES.c.webhook,
            earlier.c.event_seq < _DELIVERIES.c.event_seq,
            earlier.c.status.in_(WAITING),
            or_(earlier.c.batch_id.is_(None), earlier.c.batch_id != _DELIVERIES.c.batch_id),
        )
    )
    candidates_query = (
        select(_DELIVERIES.c.webhook, _DELIVERIES.c.batch_id, func.min(_DELIVERIES.c.event_seq))
        .where(
            _DELIVERIES.c.webhook.in_(sorted(webhooks)),
            _DELIVERIES.c.batch_id.is_not(None),
            _DELIVERIES.c.status.in_(WAITING),
        )
        .group_by(_DELIVERIES.c.webhook, _DELIVERIES.c.batch_id)
        .order_by(func.min(_DELIVERIES.c.event_seq))
    )
    held_query = (
        select(_DELIVERIES.c.webhook, _DELIVERIES.c.batch_id)
        .where(
            _DELIVERIES.c.webhook.in_(sorted(webhooks)),
            _DELIVERIES.c.batch_id.is_not(None),
            _DELIVERIES.c.status.in_(WAITING),
            or_(_DELIVERIES.c.next_attempt_at > now, ~_claimable(now), held_back),
        )
        .distinct()
    )
    with engine.connect() as conn:
        held = {(row.webhook, row.batch_id) for row in conn.execute(held_query)}
        candidates = [
            (row.webhook, row.batch_id)
            for row in conn.execute(candidates_query)
            if (row.webhook, row.batch_id) not in held
        ]
    until = now + lease
    claimed: list[ClaimedBatch] = []
    for webhook, key in candidates:
        if len(claimed) >= limit:
            break
        batch = _claim_batch(engine, webhook, key, now, until)
        if batch is not None:
            claimed.append(batch)
    return claimed


def _claim_batch(
    engine: Engine, webhook: str, key: str, now: datetime, until: datetime
) -> ClaimedBatch | None:
    of_batch = and_(_DELIVERIES.c.webhook == webhook, _DELIVERIES.c.batch_id == key)
    try:
        with _write(engine) as conn:
            waiting = conn.scalar(
                select(func.count()).where(of_batch, _DELIVERIES.c.status.in_(WAITING))
            )
            result = conn.execute(
                update(_DELIVERIES)
                .where(of_batch, _DELIVERIES.c.next_attempt_at <= now, _claimable(now))
                .values(status=DeliveryStatus.SENDING, claimed_until=until, updated_at=now)
            )
            if not waiting or result.rowcount != waiting:
                raise _Lost
            rows = conn.execute(
                _claimed_rows()
                .where(of_batch, _DELIVERIES.c.status == DeliveryStatus.SENDING)
                .order_by(_DELIVERIES.c.event_seq, _DELIVERIES.c.id)
            ).all()
    except _Lost:
        return None
    members = tuple(_claimed(row, until) for row in rows)
    return ClaimedBatch(webhook=webhook, batch_id=key, members=members, claimed_until=until)


@_translated
def finish_batch(engine: Engine, batch: ClaimedBatch, **attempt: Unpack[_Attempt]) -> bool:
    """``finish_delivery`` for every member of ``batch`` at once: all or none (False when
    the claim was lost); one attempt row per member, so each event's history shows it."""
    ids = [member.id for member in batch.members]
    return _finish(engine, ids, batch.claimed_until, **attempt)
