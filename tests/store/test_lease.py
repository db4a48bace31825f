"""The leader lease on a real PostgreSQL (issue 14): acquire, renew, release, the write fence,
and the coordinator's own deadline on its monotonic clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text
from support.records import prepared
from support.wait import wait_for

from monitor.domain import Status
from monitor.ids import new_event_id
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.runtime.lease import LeaseCoordinator
from monitor.store import models
from monitor.store.engine import make_engine, upgrade
from monitor.store.lease import Fence, Fenced, Grant, acquire, fenced, release, renew
from monitor.store.repository import Record, record_evaluations
from monitor.store.transactions import _write

IMAGE = "docker.io/library/alpine:3.20"


@pytest.fixture
def url(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def one_change(now: datetime) -> list[Record]:
    event = Event(id=new_event_id(), type=EventType.TAG_MISSING, occurred_at=now, image=IMAGE)
    state = TagState(image=IMAGE, status=Status.MISSING, decided_status=Status.MISSING)
    evaluation = Evaluation(state=state, events=(event,), changed=True)
    return prepared([evaluation], lambda e: {"id": e.id}, lambda _: ["ops"])


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        events = conn.scalar(select(func.count()).select_from(models.events))
        states = conn.scalar(select(func.count()).select_from(models.tag_states))
    return int(events or 0), int(states or 0)


def test_one_holder_at_a_time_epochs_grow_and_release_hands_over(engine: Engine) -> None:
    assert acquire(engine, "a", 30) == Grant(1, "", 0)
    assert acquire(engine, "b", 30) == Grant(None, "a", 1)  # held: b follows
    assert renew(engine, "a", 1, 30)
    assert not renew(engine, "b", 1, 30)
    assert not renew(engine, "a", 2, 30)  # a stale epoch renews nothing
    assert acquire(engine, "a", 30) == Grant(2, "a", 1)  # the holder again: a new epoch
    assert release(engine, "a", 2)
    assert acquire(engine, "b", 30) == Grant(3, "a", 2)
    assert not renew(engine, "a", 2, 30)
    assert not release(engine, "a", 2)


def test_an_expired_lease_is_free_on_the_database_clock(engine: Engine) -> None:
    assert acquire(engine, "a", 0.3).epoch == 1
    assert acquire(engine, "b", 30).epoch is None
    grant = wait_for(lambda: acquire(engine, "b", 30).epoch, timeout=5, message="expiry")
    assert grant == 2


def test_a_write_under_a_lost_lease_is_refused_whole(engine: Engine) -> None:
    now = datetime.now(UTC)
    assert acquire(engine, "a", 30).epoch == 1
    as_a = fenced(engine, Fence(lambda: ("a", 1)))
    record_evaluations(as_a, one_change(now))
    assert counts(engine) == (1, 1)
    release(engine, "a", 1)
    assert acquire(engine, "b", 30).epoch == 2
    with pytest.raises(Fenced, match="lease epoch 1 is no longer this replica's"):
        record_evaluations(as_a, one_change(now))
    assert counts(engine) == (1, 1)
    # Not leading by its own clock: refused before the database is asked.
    with pytest.raises(Fenced, match="does not hold the lease"):
        record_evaluations(fenced(engine, Fence(lambda: None)), one_change(now))
    record_evaluations(fenced(engine, Fence(lambda: ("b", 2))), one_change(now))
    assert counts(engine) == (2, 1)


def test_a_new_leader_waits_for_the_old_leaders_write_in_progress(engine: Engine) -> None:
    """The fence's share lock orders every write of epoch N before epoch N+1 begins."""
    assert acquire(engine, "a", 0.5).epoch == 1
    as_a = fenced(engine, Fence(lambda: ("a", 1)))
    taken: list[Grant] = []
    with _write(as_a) as conn:  # a's transaction passed the fence and holds its lock
        thread = threading.Thread(target=lambda: taken.append(_acquire_when_free(engine, "b")))
        thread.start()
        wait_for(lambda: _lock_waits(engine) >= 1, timeout=10, message="b waits for a")
        conn.execute(text("SELECT 1"))  # a's write goes on, its lease long expired
        assert not taken
    thread.join(10)
    assert taken and taken[0].epoch == 2 and taken[0].holder == "a"


def _acquire_when_free(engine: Engine, holder: str) -> Grant:
    grant = acquire(engine, holder, 30)
    while grant.epoch is None:
        grant = acquire(engine, holder, 30)
    return grant


def _lock_waits(engine: Engine) -> int:
    """Sessions of this test's database waiting for a lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_coordinator_stops_leading_before_its_lease_can_expire(url: str) -> None:
    clock = Clock()
    leader = LeaseCoordinator(url, 10.0, holder="a", clock=clock)
    other = LeaseCoordinator(url, 10.0, holder="b", clock=clock)

    async def scenario() -> None:
        assert await leader.step() == (True, True)
        assert leader.is_leader() and leader.epoch == 1 and leader.lead() == ("a", 1)
        assert await other.step() is None and not other.is_leader()
        clock.now += 10.0 - 2.0 - 0.001  # lease minus the margin, on its own clock
        assert leader.is_leader()
        clock.now += 0.002
        assert not leader.is_leader() and leader.lead() is None
        # The database still holds a's lease: b cannot have it yet.
        assert await other.step() is None
        assert await leader.step() == (False, False)  # said once; the next step re-acquires
        assert await leader.step() == (True, False)  # nobody led in between: not fresh
        assert leader.epoch == 2

    try:
        asyncio.run(scenario())
    finally:
        leader.dispose()
        other.dispose()
