"""Outbox batches (a webhook's ``batch:`` window) on SQLite and PostgreSQL.

A closed window becomes one batch durably (``deliveries.batch_id``), is
claimed whole by one claimer with the conditional UPDATE + row count, keeps
its id across a crash and a retry, and a later batch never overtakes an
earlier one of the same webhook.
"""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import test_outbox
from sqlalchemy import Engine
from support.receiver import WebhookReceiver
from test_outbox import LEASE, SECRET, Clock, attempts, image, rows, write_events

from monitor.config import parse_config
from monitor.notify import Dispatcher
from monitor.notify.dispatcher import delivery_id
from monitor.notify.notifier import batch_id
from monitor.store.outbox import (
    claim_due_batches,
    claim_due_deliveries,
    finish_batch,
    form_batch,
    reset_sending,
)

WINDOW = timedelta(seconds=30)


@pytest.fixture(autouse=True)
def fresh_now() -> None:
    # Receivers refuse signatures over five minutes old: "now" is taken per test.
    test_outbox.T0 = datetime.now(UTC).replace(microsecond=0)


def form(engine: Engine, now_offset: float, webhook: str = "ops", limit: int = 100) -> str | None:
    now = test_outbox.T0 + timedelta(seconds=now_offset)
    return form_batch(engine, webhook, now, WINDOW, limit, delivery_id)


def test_a_window_closes_into_one_batch_named_by_its_events(engine: Engine) -> None:
    t0 = test_outbox.T0
    first = write_events(engine, [image("a"), image("b")], at=t0)
    second = write_events(engine, [image("c")], at=t0 + timedelta(seconds=29))
    late = write_events(engine, [image("d")], at=t0 + timedelta(seconds=31))
    assert form(engine, 29.9) is None  # the window is still open
    key = form(engine, 30)
    assert key == batch_id([*first, *second])
    # Singles never claim batch members (the late one is not in a batch yet).
    singles = claim_due_deliveries(engine, t0 + timedelta(seconds=40), 10, LEASE)
    assert [d.event_id for d in singles] == late
    assert {row.batch_id for row in rows(engine).values()} == {key, None}
    (alone,) = write_events(engine, [image("e")], at=t0 + timedelta(seconds=100))
    assert form(engine, 129) is None
    assert form(engine, 130) == alone  # a window with one event: sent under its own id


def test_a_batch_is_claimed_whole_by_one_of_two_claimers(engine: Engine) -> None:
    t0 = test_outbox.T0
    ids = write_events(engine, [image(f"app{i}") for i in range(40)], at=t0)
    key = form(engine, 31)
    got: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(index: int) -> None:
        barrier.wait()
        for batch in claim_due_batches(engine, t0 + timedelta(seconds=31), LEASE, webhooks=["ops"]):
            got[index].extend(m.event_id for m in batch.members)
            assert batch.batch_id == key

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(got, key=len) == [[], ids]


def test_a_crash_after_the_claim_gives_the_same_batch_again_and_a_lost_claim_writes_nothing(
    engine: Engine,
) -> None:
    t0 = test_outbox.T0
    ids = write_events(engine, [image("a"), image("a"), image("b")], at=t0)
    key = form(engine, 30)
    now = t0 + timedelta(seconds=30)
    (claimed,) = claim_due_batches(engine, now, LEASE, webhooks=["ops"])
    assert claim_due_batches(engine, now, LEASE, webhooks=["ops"]) == []
    now = now + timedelta(seconds=1)
    assert reset_sending(engine, now, all_leases=True) == 3  # the next start after SIGKILL
    (again,) = claim_due_batches(engine, now, LEASE, webhooks=["ops"])
    assert (again.batch_id, [m.event_id for m in again.members]) == (key, ids)
    # The old owner's late outcome is fenced off, all or nothing.
    assert not finish_batch(engine, claimed, attempted_at=now, status="delivered", status_code=200)
    assert {row.status for row in rows(engine).values()} == {"sending"}
    assert finish_batch(
        engine,
        again,
        attempted_at=now,
        status="pending",
        status_code=500,
        error="HTTP 500",
        next_attempt_at=now + timedelta(minutes=1),
    )
    assert {(row.status, row.attempts) for row in rows(engine).values()} == {("pending", 1)}
    assert len(attempts(engine)) == 3  # one attempt row per member: each event's history


def test_a_later_batch_waits_for_the_earlier_one(engine: Engine) -> None:
    t0 = test_outbox.T0
    write_events(engine, [image("a")], at=t0)
    write_events(engine, [image("b")], at=t0 + timedelta(seconds=40))
    early = form(engine, 30)
    later = form(engine, 70)
    assert early and later and early != later
    now = t0 + timedelta(seconds=70)
    (first,) = claim_due_batches(engine, now, LEASE, webhooks=["ops"], limit=5)
    assert first.batch_id == early
    finish_batch(
        engine,
        first,
        attempted_at=now,
        status="pending",
        error="HTTP 503",
        next_attempt_at=now + timedelta(minutes=5),
    )
    # Retrying, the earlier batch still holds the later one back (another tag, same webhook).
    assert claim_due_batches(engine, now + timedelta(minutes=1), LEASE, webhooks=["ops"]) == []
    (retried,) = claim_due_batches(engine, now + timedelta(minutes=5), LEASE, webhooks=["ops"])
    assert retried.batch_id == early
    finish_batch(engine, retried, attempted_at=now, status="failed", status_code=410)
    (follow,) = claim_due_batches(engine, now + timedelta(minutes=5), LEASE, webhooks=["ops"])
    assert follow.batch_id == later


def test_the_dispatcher_sends_a_window_as_one_signed_delivery_and_retries_it_under_its_id(
    engine: Engine,
) -> None:
    t0 = test_outbox.T0
    ids = write_events(engine, [image("a"), image("b"), image("a")], at=t0)
    with WebhookReceiver(SECRET) as rx:
        config = parse_config(
            f"webhooks:\n  - {{name: ops, url: '{rx.url}', secret: {SECRET}, batch: 30s}}\n"
        )
        clock = Clock(t0 + timedelta(seconds=10))

        async def go() -> int:
            async with httpx.AsyncClient() as http:
                dispatcher = Dispatcher(
                    engine, lambda: config, http, clock=clock, rng=random.Random(1)
                )
                return await dispatcher.run_once()

        assert asyncio.run(go()) == 0  # the window is open: nothing is sent
        rx.answer(500, times=1)
        clock.now = t0 + timedelta(seconds=30)
        assert asyncio.run(go()) == 3
        clock.now = t0 + timedelta(seconds=60)
        assert asyncio.run(go()) == 3
        failed, delivered = rx.attempts
        assert rx.invalid == []
        assert (failed.status, delivered.status) == (500, 200)
        assert failed.id == delivered.id == batch_id(ids)
        assert set(delivered.body) == {"type", "id", "events"}
        assert (delivered.body["type"], delivered.body["id"]) == ("batch", batch_id(ids))
        assert [e["id"] for e in delivered.body["events"]] == ids
        assert {(row.status, row.attempts) for row in rows(engine).values()} == {("delivered", 2)}
        assert asyncio.run(go()) == 0
        assert len(rx.attempts) == 2
