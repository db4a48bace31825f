"""The webhook outbox and the dispatcher against a real database and real loopback receivers.

Claims are exclusive (two claimers in two threads), per-tag order holds per
webhook, leases expire, and each outcome (delivered, retry, failed, dead)
lands in the deliveries and delivery_attempts tables and in the metric.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import tracemalloc
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, select, update
from support.receiver import WebhookReceiver
from support.records import prepared

from monitor.config import Config, parse_config
from monitor.domain import Status
from monitor.metrics import Metrics
from monitor.notify import Dispatcher
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.store import models, record_evaluations
from monitor.store.outbox import (
    claim_due_deliveries,
    delivery_states,
    finish_delivery,
    kill_removed_webhooks,
    release_claims,
    reset_sending,
)
from monitor.wire import event_to_payload

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEASE = timedelta(seconds=60)
_ids = itertools.count()


def image(name: str) -> str:
    return f"registry.example.com/team/{name}:prod"


def new_id() -> str:
    return f"01OUTBOX{next(_ids):018d}"


def write_events(
    engine: Engine, images: Sequence[str], webhooks: Sequence[str] = ("ops",), *, at: datetime
) -> list[str]:
    """One tag.changed per image (in order, one transaction); the event ids."""
    evaluations = []
    ids = []
    for ref in images:
        ev = Event(
            id=new_id(),
            type=EventType.TAG_CHANGED,
            occurred_at=at,
            image=ref,
            previous_status=Status.PRESENT,
            previous_digest="sha256:" + "a" * 64,
            current_status=Status.PRESENT,
            current_digest="sha256:" + "b" * 64,
            checked_at=at,
        )
        ids.append(ev.id)
        evaluations.append(Evaluation(state=TagState(image=ref), events=(ev,), changed=False))
    record_evaluations(
        engine, prepared(evaluations, event_to_payload, lambda _e: list(webhooks)), now=at
    )
    return ids


def rows(engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(models.deliveries))}


def attempts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(select(models.delivery_attempts).order_by(models.delivery_attempts.c.id))
        )


# "Now" for each test (see fresh_now): deliveries are signed with the dispatcher's
# clock and receivers refuse timestamps more than five minutes off, so a module-level
# "now" goes stale in a long suite run.
T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def fresh_now() -> None:
    global T0
    T0 = datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- claiming


def test_two_claimers_never_claim_the_same_row(engine: Engine) -> None:
    write_events(engine, [image(f"app{i}") for i in range(60)], ("ops", "chat"), at=T0)
    claimed: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(index: int) -> None:
        barrier.wait()
        while True:
            batch = claim_due_deliveries(engine, T0 + timedelta(seconds=1), 7, LEASE)
            if not batch:
                return
            claimed[index].extend(d.id for d in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    both = claimed[0] + claimed[1]
    assert len(both) == 120
    assert len(set(both)) == 120, "a delivery was claimed twice"
    assert all(row.status == "sending" for row in rows(engine).values())


def test_a_later_event_of_the_same_tag_waits_for_the_earlier_one(engine: Engine) -> None:
    first, second = write_events(engine, [image("a"), image("a")], at=T0)
    (other,) = write_events(engine, [image("b")], at=T0)
    now = T0 + timedelta(seconds=1)

    batch = claim_due_deliveries(engine, now, 10, LEASE)
    assert [d.event_id for d in batch] == [first, other]
    held = batch[0]
    assert finish_delivery(engine, batch[1], attempted_at=now, status="delivered", status_code=200)
    # The first fails and waits for a retry: the second still may not overtake it.
    assert finish_delivery(
        engine,
        held,
        attempted_at=now,
        status="pending",
        status_code=500,
        error="HTTP 500",
        next_attempt_at=now + timedelta(minutes=5),
    )
    assert claim_due_deliveries(engine, now + timedelta(seconds=1), 10, LEASE) == []

    # Due again, it is claimed; once delivered, the second one follows.
    again = claim_due_deliveries(engine, now + timedelta(minutes=5), 10, LEASE)
    assert [d.event_id for d in again] == [first]
    assert finish_delivery(engine, again[0], attempted_at=now, status="delivered", status_code=200)
    (follow,) = claim_due_deliveries(engine, now + timedelta(minutes=5), 10, LEASE)
    assert follow.event_id == second


def test_order_is_per_webhook(engine: Engine) -> None:
    first, second = write_events(engine, [image("a"), image("a")], ("ops", "chat"), at=T0)
    now = T0 + timedelta(seconds=1)
    (ops_first,) = claim_due_deliveries(engine, now, 10, LEASE, webhooks=["ops"])
    assert ops_first.event_id == first
    finish_delivery(engine, ops_first, attempted_at=now, status="delivered", status_code=200)
    # ops moves on to the second event while chat has not even sent the first.
    (ops_second,) = claim_due_deliveries(engine, now, 10, LEASE, webhooks=["ops"])
    assert ops_second.event_id == second
    (chat_first,) = claim_due_deliveries(engine, now, 10, LEASE, webhooks=["chat"])
    assert chat_first.event_id == first


@pytest.mark.parametrize("final", ["failed", "dead"])
def test_a_final_failure_releases_the_queue(engine: Engine, final: str) -> None:
    _first, second = write_events(engine, [image("a"), image("a")], at=T0)
    (held,) = claim_due_deliveries(engine, T0, 10, LEASE)
    finish_delivery(engine, held, attempted_at=T0, status=final, status_code=410)
    (follow,) = claim_due_deliveries(engine, T0, 10, LEASE)
    assert follow.event_id == second


def test_an_expired_lease_is_claimed_again_and_fences_the_old_owner(engine: Engine) -> None:
    write_events(engine, [image("a")], at=T0)
    (mine,) = claim_due_deliveries(engine, T0, 10, LEASE)
    assert claim_due_deliveries(engine, T0 + timedelta(seconds=59), 10, LEASE) == []
    (theirs,) = claim_due_deliveries(engine, T0 + timedelta(seconds=61), 10, LEASE)
    assert theirs.id == mine.id
    # The first owner comes back late: its outcome is not recorded over the new claim.
    assert not finish_delivery(engine, mine, attempted_at=T0, status="delivered", status_code=200)
    assert finish_delivery(engine, theirs, attempted_at=T0, status="delivered", status_code=200)
    assert rows(engine)[mine.id].attempts == 1
    assert len(attempts(engine)) == 1


def test_reset_and_release(engine: Engine) -> None:
    write_events(engine, [image("a"), image("b"), image("c")], at=T0)
    assert len(claim_due_deliveries(engine, T0, 10, LEASE)) == 3
    assert reset_sending(engine, T0 + timedelta(seconds=1)) == 0  # leases still live
    assert reset_sending(engine, T0 + timedelta(seconds=61)) == 3
    assert len(claim_due_deliveries(engine, T0, 10, LEASE)) == 3
    assert reset_sending(engine, T0, all_leases=True) == 3  # the start of the one regmon
    a, _b, c = claim_due_deliveries(engine, T0, 10, LEASE)
    assert release_claims(engine, [a, c], T0) == 2
    assert {row.status for row in rows(engine).values()} == {"pending", "sending"}
    assert all(row.attempts == 0 for row in rows(engine).values())


def test_removed_webhooks_deliveries_are_dead(engine: Engine) -> None:
    write_events(engine, [image("a"), image("b")], ("ops", "gone"), at=T0)
    assert kill_removed_webhooks(engine, {"ops"}, T0) == {"gone": 2}
    states = {row.webhook: row.status for row in rows(engine).values() if row.webhook == "gone"}
    assert states == {"gone": "dead"}
    assert kill_removed_webhooks(engine, {"ops"}, T0) == {}


def test_delivery_states_for_the_api(engine: Engine) -> None:
    (event_id,) = write_events(engine, [image("a")], ("ops", "chat"), at=T0)
    (ops,) = claim_due_deliveries(engine, T0, 10, LEASE, webhooks=["ops"])
    finish_delivery(engine, ops, attempted_at=T0, status="delivered", status_code=204)
    states = delivery_states(engine, [event_id, "01UNKNOWN"])
    assert {(s.webhook, s.status, s.attempts) for s in states[event_id]} == {
        ("chat", "pending", 0),
        ("ops", "delivered", 1),
    }


# --------------------------------------------------------------------------- the dispatcher


@dataclass
class FakeView:
    engine: Engine
    config: Config
    _watches: list[Any] = field(default_factory=list)

    def watches(self) -> list[Any]:
        return self._watches

    def states(self) -> dict[str, Any]:
        return {}

    def is_leader(self) -> bool:
        return True


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def config_for(**urls: str) -> Config:
    hooks = "\n".join(
        f"  - {{name: {name}, url: '{url}', secret: {SECRET}, max_retry_age: 1m}}"
        for name, url in urls.items()
    )
    return parse_config(f"webhooks:\n{hooks}\n")


def run_dispatcher(
    engine: Engine, config: Config, clock: Clock, metrics: Metrics | None = None
) -> int:
    async def go() -> int:
        async with httpx.AsyncClient() as http:
            dispatcher = Dispatcher(
                engine, lambda: config, http, metrics, clock=clock, rng=random.Random(1)
            )
            return await dispatcher.run_once()

    return asyncio.run(go())


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as rx:
        yield rx


def test_dispatcher_delivers_signed_and_records_the_attempt(
    engine: Engine, receiver: WebhookReceiver
) -> None:
    (event_id,) = write_events(engine, [image("a")], at=T0)
    registry = CollectorRegistry()
    config = config_for(ops=receiver.url)
    metrics = Metrics(registry, FakeView(engine, config))
    assert run_dispatcher(engine, config, Clock(T0), metrics) == 1
    assert receiver.invalid == []
    assert receiver.delivered_ids() == [event_id]
    (row,) = rows(engine).values()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.delivered_at is not None and row.claimed_until is None
    (attempt,) = attempts(engine)
    assert attempt.status_code == 200 and attempt.latency_ms is not None
    sample = registry.get_sample_value
    assert sample("regmon_webhook_deliveries_total", {"webhook": "ops", "outcome": "delivered"})
    assert sample("regmon_webhook_pending", {"webhook": "ops"}) == 0


def test_dispatcher_retries_a_5xx_with_backoff(engine: Engine, receiver: WebhookReceiver) -> None:
    write_events(engine, [image("a")], at=T0)
    receiver.answer(500)
    run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0))
    (row,) = rows(engine).values()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert T0 <= row.next_attempt_at <= T0 + timedelta(seconds=0.5)
    assert "HTTP 500" in row.last_error


def test_dispatcher_gives_up_on_410_after_one_attempt(
    engine: Engine, receiver: WebhookReceiver
) -> None:
    write_events(engine, [image("a")], at=T0)
    receiver.answer(410)
    registry = CollectorRegistry()
    config = config_for(ops=receiver.url)
    metrics = Metrics(registry, FakeView(engine, config))
    run_dispatcher(engine, config, Clock(T0), metrics)
    assert run_dispatcher(engine, config, Clock(T0 + timedelta(hours=1)), metrics) == 0
    (row,) = rows(engine).values()
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 1, 410)
    assert len(receiver.attempts) == 1
    labels = {"webhook": "ops", "outcome": "failed"}
    assert registry.get_sample_value("regmon_webhook_deliveries_total", labels) == 1


def test_dispatcher_marks_dead_after_max_retry_age(
    engine: Engine, receiver: WebhookReceiver
) -> None:
    write_events(engine, [image("a")], at=T0)
    receiver.answer(503)
    registry = CollectorRegistry()
    config = config_for(ops=receiver.url)
    metrics = Metrics(registry, FakeView(engine, config))
    clock = Clock(T0)
    run_dispatcher(engine, config, clock, metrics)
    (row,) = rows(engine).values()
    assert row.status == "pending"
    # The last retry is due at the deadline at the latest; failing then is the end.
    clock.now = T0 + timedelta(seconds=60)
    with engine.begin() as conn:
        conn.execute(update(models.deliveries).values(next_attempt_at=clock.now))
    run_dispatcher(engine, config, clock, metrics)
    (row,) = rows(engine).values()
    assert (row.status, row.attempts) == ("dead", 2)
    sample = registry.get_sample_value
    assert sample("regmon_webhook_deliveries_total", {"webhook": "ops", "outcome": "retry"}) == 1
    assert sample("regmon_webhook_deliveries_total", {"webhook": "ops", "outcome": "dead"}) == 1


def test_dispatcher_honours_retry_after(engine: Engine, receiver: WebhookReceiver) -> None:
    write_events(engine, [image("a")], at=T0)
    receiver.answer(429, {"Retry-After": "30"}, times=1)
    run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0))
    (row,) = rows(engine).values()
    assert row.next_attempt_at == T0 + timedelta(seconds=30)
    assert run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0)) == 0  # not yet
    run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0 + timedelta(seconds=30)))
    (row,) = rows(engine).values()
    assert row.status == "delivered"


def test_dispatcher_drops_deliveries_of_a_removed_webhook(
    engine: Engine, receiver: WebhookReceiver
) -> None:
    write_events(engine, [image("a")], ("ops", "gone"), at=T0)
    run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0))
    by_hook = {row.webhook: row for row in rows(engine).values()}
    assert by_hook["ops"].status == "delivered"
    assert by_hook["gone"].status == "dead"
    assert by_hook["gone"].last_error == "webhook removed from config"


def test_one_hung_receiver_does_not_hold_up_another_webhook(engine: Engine) -> None:
    with WebhookReceiver(SECRET) as slow, WebhookReceiver(SECRET) as fast:
        slow.hang()
        write_events(engine, [image("a"), image("b")], ("slow", "fast"), at=T0)
        config = parse_config(
            "webhooks:\n"
            f"  - {{name: slow, url: '{slow.url}', secret: {SECRET}, timeout: 3s}}\n"
            f"  - {{name: fast, url: '{fast.url}', secret: {SECRET}}}\n"
        )

        # The slow receiver's 3 s timeout bounds the wait; the fast one is done long before
        # it, also on a loaded CI machine (with a 1 s timeout, a 1.06 s fast send failed).
        async def go() -> tuple[float, float]:
            async with httpx.AsyncClient() as http:
                dispatcher = Dispatcher(engine, lambda: config, http, clock=Clock(T0))
                loop = asyncio.get_running_loop()
                began = loop.time()
                tasks = await dispatcher._dispatch()
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                fast_done = loop.time() - began
                await asyncio.gather(*tasks)
                return fast_done, loop.time() - began

        fast_done, all_done = asyncio.run(go())
        assert len(fast.delivered()) == 2
        assert fast_done < 3.0 < all_done
        slow.answer(200)


def test_stop_returns_once_the_store_work_it_interrupts_has_given_its_connection_back(
    engine: Engine,
) -> None:
    """The service disposes the engine right after: a connection handed back to a disposed
    pool stays open until the garbage collector finds it (psycopg's ResourceWarning)."""
    started, release = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE deliveries"):  # the loop's first step: reset_sending
            started.set()
            release.wait(10)

    event.listen(engine, "before_cursor_execute", hold)
    config = config_for(ops="http://127.0.0.1:9/")

    async def go() -> tuple[bool, int]:
        async with httpx.AsyncClient() as http:
            dispatcher = Dispatcher(engine, lambda: config, http, clock=Clock(T0))
            dispatcher.start()
            assert await asyncio.to_thread(started.wait, 10)
            stopping = asyncio.create_task(dispatcher.stop())
            done, _ = await asyncio.wait({stopping}, timeout=0.5)
            checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
            release.set()
            await stopping
            return bool(done), checked_out

    # Stop waits for the thread (its connection still out), not the other way round.
    assert asyncio.run(go()) == (False, 1)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- credentials masked

HOOK_USER, HOOK_PASSWORD = "hookuser", "hookpass-9Q"
QUERY_TOKEN, API_KEY = "qtok-5bd0c2", "key-77aa21"
BASIC = __import__("base64").b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()


def echoed_secrets() -> list[str]:
    return [HOOK_PASSWORD, BASIC, QUERY_TOKEN, API_KEY, SECRET, SECRET.removeprefix("whsec_")]


def test_a_receiver_echoing_the_authorization_header_leaks_nothing(
    engine: Engine, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    write_events(engine, [image("a")], at=T0)
    receiver.answer(500, echo=True)
    url = f"http://{HOOK_USER}:{HOOK_PASSWORD}@{receiver.host}/hook?token={QUERY_TOKEN}"
    config = parse_config(
        f"webhooks:\n  - {{name: ops, url: '{url}', secret: {SECRET},"
        f" headers: {{X-Api-Key: {API_KEY}}}}}\n"
    )
    with caplog.at_level("WARNING", logger="regmon.webhooks"):
        run_dispatcher(engine, config, Clock(T0))
    (got,) = receiver.attempts
    assert got.headers["authorization"] == f"Basic {BASIC}"  # it was sent, and echoed
    (row,) = rows(engine).values()
    assert row.last_error.startswith(
        f"HTTP 500 from http://***@{receiver.host}/***: receiver says 500 you sent /***?*** "
        "authorization: Basic *** "
    )
    (record,) = caplog.records
    assert "authorization: Basic ***" in record.getMessage()
    for secret in echoed_secrets():
        assert secret not in row.last_error
        assert secret not in record.getMessage()


def test_a_compressed_answer_is_read_only_up_to_its_cap(
    engine: Engine, receiver: WebhookReceiver
) -> None:
    # 256 MiB of zeros in about 256 KiB of gzip: httpx would inflate a whole network
    # chunk at once; the sender counts decoded bytes and stops at its cap.
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(squeeze.compress(b"\0" * (1 << 20)) for _ in range(256)) + squeeze.flush()
    receiver.answer(500, {"Content-Encoding": "gzip", "Content-Type": "text/plain"}, body=bomb)
    write_events(engine, [image("a")], at=T0)
    tracemalloc.start()
    try:
        run_dispatcher(engine, config_for(ops=receiver.url), Clock(T0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (row,) = rows(engine).values()
    assert (row.status, row.last_status_code) == ("pending", 500)
    assert row.last_error.startswith("HTTP 500 from http://127.0.0.1:")
    assert peak < 16 * 1024 * 1024
