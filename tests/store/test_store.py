"""monitor.store: round trips, batched atomic writes, events queries, outbox rows, pruning."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, text
from support.records import prepared

from monitor.domain import Reason, Status
from monitor.errors import ConfigError
from monitor.records import Evaluation, Event, EventType, PlatformChange, TagState
from monitor.store import (
    StoreError,
    UnknownEventError,
    active_watches,
    check_schema,
    get_state,
    history_for,
    list_events,
    load_states,
    load_versioned_states,
    make_engine,
    models,
    prune,
    record_evaluations,
    sync_sources,
    sync_watches,
    upgrade,
)
from monitor.store.repository import Record, Recorded
from monitor.store.watches import WatchRow

T0 = datetime(2026, 11, 27, 5, 40, 20, 123456, tzinfo=UTC)
IMAGE = "docker.io/library/nginx:1.27"
_ids = itertools.count()


def new_id() -> str:
    return f"01TEST{next(_ids):020d}"


def payload(ev: Event) -> dict[str, Any]:
    return {
        "id": ev.id,
        "type": ev.type.value,
        "occurred_at": ev.occurred_at.isoformat(),
        "image": {"reference": ev.image},
        "current": {"status": ev.current_status, "digest": ev.current_digest},
    }


def make_event(
    image: str = IMAGE, type_: EventType = EventType.TAG_CHANGED, at: datetime = T0
) -> Event:
    return Event(
        id=new_id(),
        type=type_,
        occurred_at=at,
        image=image,
        previous_status=Status.PRESENT,
        previous_digest="sha256:aaa",
        current_status=Status.PRESENT,
        current_digest="sha256:bbb",
        checked_at=at,
        platforms={"linux/amd64": PlatformChange("sha256:a1", "sha256:b1")},
    )


def present(
    image: str = IMAGE, digest: str = "sha256:aaa", at: datetime = T0, **kw: Any
) -> TagState:
    return TagState(
        image=image,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest=digest,
        platforms={"linux/amd64": digest + "-amd64"},
        first_seen=T0,
        last_checked=at,
        last_decided=at,
        last_changed=at,
        **kw,
    )


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def count_rows(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


# --- engine ---------------------------------------------------------------------------


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'regmon.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    engine.dispose()


def test_check_schema(db_url: str) -> None:
    eng = make_engine(db_url)
    try:
        with pytest.raises(StoreError, match="run the migrations"):
            check_schema(eng)
        upgrade(eng)
        check_schema(eng)
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "url",
    ["not a url", "nosuchdb://user:hunter2@host/db", "postgresql+nosuchdriver://u:hunter2@h/d"],
)
def test_bad_url_is_config_error_without_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_engine(url)
    message = str(info.value)
    assert "hunter2" not in message
    assert "\n" not in message
    assert message.startswith("database:")


def test_naive_datetime_refused(engine: Engine) -> None:
    naive = TagState(image=IMAGE, status=Status.PRESENT, last_checked=datetime(2026, 1, 1))
    with pytest.raises(StoreError, match="naive datetime"):
        record_evaluations(engine, prepared([Evaluation(naive)], payload))


# --- tag states -----------------------------------------------------------------------


def test_state_round_trip(engine: Engine) -> None:
    state = TagState(
        image=IMAGE,
        status=Status.ERROR,
        decided_status=Status.PRESENT,
        digest="sha256:" + "a" * 64,
        media_type="application/vnd.oci.image.index.v1+json",
        platforms={"linux/amd64": "sha256:" + "b" * 64, "linux/arm64/v8": "sha256:" + "c" * 64},
        reason=Reason.TIMEOUT,
        detail="read timeout after 10s",
        first_seen=T0,
        last_checked=T0 + timedelta(minutes=5),
        last_decided=T0,
        last_changed=T0 - timedelta(days=3),
        consecutive_misses=0,
        consecutive_errors=2,
        missing_alerted=False,
        failing_alerted=True,
        digest_changes=7,
    )
    record_evaluations(engine, prepared([Evaluation(state)], payload))
    loaded = load_states(engine)
    assert loaded == {IMAGE: state}
    got = loaded[IMAGE]
    assert got.last_checked is not None and got.last_checked.tzinfo is not None
    assert got.last_changed == T0 - timedelta(days=3)
    assert get_state(engine, IMAGE) == state
    assert get_state(engine, "docker.io/library/other:1") is None


def test_other_timezone_stored_as_utc(engine: Engine) -> None:
    from datetime import timezone

    paris = T0.astimezone(timezone(timedelta(hours=1)))
    record_evaluations(engine, prepared([Evaluation(present(at=paris))], payload))
    got = get_state(engine, IMAGE)
    assert got is not None and got.last_checked == T0
    assert got.last_checked.utcoffset() == timedelta(0)


def test_upsert_replaces_state(engine: Engine) -> None:
    record_evaluations(engine, prepared([Evaluation(present(), changed=True)], payload))
    later = present(digest="sha256:bbb", at=T0 + timedelta(minutes=5), digest_changes=1)
    record_evaluations(
        engine, prepared([Evaluation(later, (make_event(),), changed=True)], payload)
    )
    assert load_states(engine) == {IMAGE: later}
    assert load_states(engine)[IMAGE].digest_changes == 1  # the counter metric survives


# --- compare-and-set ----------------------------------------------------------------------


def guarded(evaluation: Evaluation, expected: int, version: int) -> Record:
    [record] = prepared([evaluation], payload, lambda e: ("ops",))
    return replace(record, expected=expected, version=version)


def test_two_writers_on_one_version_the_second_is_refused(db_url: str) -> None:
    # Two engines, as two replicas would have: each read version 0 (never written).
    first, second = make_engine(db_url), make_engine(db_url)
    try:
        upgrade(first)
        a = Evaluation(present(digest="sha256:aaa"), (make_event(),), changed=True)
        b = Evaluation(present(digest="sha256:bbb"), (make_event(),), changed=True)
        won = record_evaluations(first, [guarded(a, 0, 1)])
        lost = record_evaluations(second, [guarded(b, 0, 1)])
        assert (len(won.seqs), won.refused) == (1, ())
        assert lost.seqs == [] and lost.refused == (guarded(b, 0, 1),)
        # The loser gets the store's state to evaluate again on.
        assert lost.current == {IMAGE: (a.state, 1)}
        assert load_versioned_states(second) == {IMAGE: (a.state, 1)}
        assert count_rows(second, models.events) == 1
        assert count_rows(second, models.deliveries) == 1
        assert count_rows(second, models.history) == 1
        # Again on the version it now read: written.
        again = record_evaluations(second, [guarded(b, 1, 2)])
        assert again.refused == () and len(again.seqs) == 1
        assert load_versioned_states(first) == {IMAGE: (b.state, 2)}
    finally:
        first.dispose()
        second.dispose()


def test_concurrent_writers_exactly_one_wins_each_version(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(4)]
    try:
        upgrade(engines[0])
        barrier = threading.Barrier(len(engines))

        def write(n: int) -> Recorded:
            evaluation = Evaluation(present(digest=f"sha256:{n}"), (make_event(),), changed=True)
            barrier.wait()
            return record_evaluations(engines[n], [guarded(evaluation, 0, 1)])

        with ThreadPoolExecutor(len(engines)) as pool:
            results = list(pool.map(write, range(len(engines))))
        assert sorted(len(r.refused) for r in results) == [0, 1, 1, 1]
        assert count_rows(engines[0], models.events) == 1
        [(state, version)] = load_versioned_states(engines[0]).values()
        assert version == 1
        [winner] = [n for n, r in enumerate(results) if not r.refused]
        assert state.digest == f"sha256:{winner}"
    finally:
        for engine in engines:
            engine.dispose()


def test_later_records_of_a_refused_tag_in_the_batch_are_refused_too(engine: Engine) -> None:
    record_evaluations(engine, [guarded(Evaluation(present()), 0, 1)])
    other = "r.io/other:1"
    batch = [
        guarded(Evaluation(present(digest="sha256:x")), 0, 5),  # stale: the store is at 1
        guarded(Evaluation(present(digest="sha256:y")), 5, 6),  # made on top of the stale one
        guarded(Evaluation(present(other)), 0, 1),
    ]
    result = record_evaluations(engine, batch)
    assert result.refused == (batch[0], batch[1])
    assert {k: v for k, (_, v) in load_versioned_states(engine).items()} == {IMAGE: 1, other: 1}


# --- batched writes ---------------------------------------------------------------------


def test_ten_thousand_evaluations_in_a_handful_of_statements(
    engine: Engine, statements: list[str]
) -> None:
    evaluations = [
        Evaluation(
            present(f"registry.example/team/app{n}:latest"),
            events=(make_event(f"registry.example/team/app{n}:latest"),),
            changed=True,
        )
        for n in range(10_000)
    ]
    seqs = record_evaluations(
        engine, prepared(evaluations, payload, lambda e: ("ops", "audit"))
    ).seqs
    assert len(statements) < 10, statements  # BEGIN + 5 or 6 INSERTs on SQLite
    assert len(seqs) == 10_000 and seqs == sorted(seqs)
    assert count_rows(engine, models.tag_states) == 10_000
    assert count_rows(engine, models.history) == 10_000
    assert count_rows(engine, models.events) == 10_000
    assert count_rows(engine, models.deliveries) == 20_000


def test_history_grows_only_with_changes(engine: Engine) -> None:
    record_evaluations(engine, prepared([Evaluation(present(), changed=True)], payload))
    for minutes in range(1, 6):  # unchanged checks: state moves, history does not
        state = present(at=T0 + timedelta(minutes=minutes))
        record_evaluations(engine, prepared([Evaluation(state)], payload))
    assert len(history_for(engine, IMAGE)) == 1

    ev = make_event(type_=EventType.TAG_MISSING, at=T0 + timedelta(minutes=10))
    missing = TagState(
        image=IMAGE,
        status=Status.MISSING,
        decided_status=Status.MISSING,
        digest="sha256:aaa",  # the last digest seen stays on the state...
        platforms={"linux/amd64": "sha256:aaa-amd64"},
        last_checked=T0 + timedelta(minutes=10),
        last_decided=T0 + timedelta(minutes=10),
    )
    record_evaluations(engine, prepared([Evaluation(missing, (ev,), changed=True)], payload))
    rows = history_for(engine, IMAGE)
    assert [(r.status, r.digest) for r in rows] == [
        (Status.PRESENT, "sha256:aaa"),
        (Status.MISSING, None),  # ...but not on the history row of a missing tag
    ]
    assert rows[0].platforms == {"linux/amd64": "sha256:aaa-amd64"}
    assert rows[0].recorded_at == T0 and rows[1].recorded_at == T0 + timedelta(minutes=10)
    assert rows[1].event_id == ev.id
    assert history_for(engine, "r.io/never:seen") == []


# --- outbox and atomicity ---------------------------------------------------------------


def test_delivery_row_per_webhook(engine: Engine) -> None:
    ev1, ev2 = make_event(), make_event(type_=EventType.TAG_MISSING)
    routes = {ev1.id: ("ops", "chat"), ev2.id: ("ops",)}
    seqs = record_evaluations(
        engine,
        prepared(
            [Evaluation(present(), (ev1, ev2), changed=True)], payload, lambda e: routes[e.id]
        ),
        now=T0,
    ).seqs
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                models.deliveries.c.event_seq,
                models.deliveries.c.webhook,
                models.deliveries.c.status,
                models.deliveries.c.attempts,
                models.deliveries.c.next_attempt_at,
            ).order_by(models.deliveries.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (seqs[0], "ops", "pending", 0, T0),
        (seqs[0], "chat", "pending", 0, T0),
        (seqs[1], "ops", "pending", 0, T0),
    ]


def test_failure_mid_batch_writes_nothing(engine: Engine) -> None:
    record_evaluations(engine, prepared([Evaluation(present(), changed=True)], payload))
    before = load_states(engine)
    batch = [
        Evaluation(
            present(f"r.io/app{n}:1", digest="sha256:new", digest_changes=1),
            (make_event(f"r.io/app{n}:1"),),
            changed=True,
        )
        for n in range(5)
    ] + [Evaluation(present(digest="sha256:new"), (make_event(),), changed=True)]
    records = prepared(batch, payload, lambda e: ("ops",))
    # The third body cannot be stored (not JSON): the events INSERT fails after the states.
    records[2] = replace(records[2], payloads=({"not json": object()},))
    # SQLite's driver binds the JSON in SQLAlchemy (a StoreError), psycopg in its own dumper.
    with pytest.raises((StoreError, TypeError)):
        record_evaluations(engine, records)
    assert load_states(engine) == before
    assert count_rows(engine, models.events) == 0
    assert count_rows(engine, models.deliveries) == 0
    assert count_rows(engine, models.history) == 1


def test_database_failure_mid_transaction_writes_nothing(engine: Engine) -> None:
    # A duplicate event id fails the INSERT after the states were upserted in the same
    # transaction: the states must roll back too.
    ev = make_event()
    record_evaluations(engine, prepared([Evaluation(present(), (ev,))], payload))
    changed = present(digest="sha256:zzz")
    with pytest.raises(StoreError, match="record_evaluations failed"):
        record_evaluations(engine, prepared([Evaluation(changed, (ev,), changed=True)], payload))
    state = get_state(engine, IMAGE)
    assert state is not None and state.digest == "sha256:aaa"
    assert count_rows(engine, models.history) == 0


def test_generic_upsert_path(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Backends other than SQLite/PostgreSQL fall back to SELECT + INSERT + UPDATE.
    record_evaluations(engine, prepared([Evaluation(present("r.io/a:1"))], payload))
    monkeypatch.setattr(engine.dialect, "name", "other")
    record_evaluations(
        engine,
        prepared(
            [Evaluation(present("r.io/a:1", digest="sha256:b")), Evaluation(present("r.io/b:1"))],
            payload,
        ),
    )
    states = load_states(engine)
    assert states["r.io/a:1"].digest == "sha256:b"
    assert set(states) == {"r.io/a:1", "r.io/b:1"}


# --- events ---------------------------------------------------------------------------


@pytest.fixture
def five_events(engine: Engine) -> list[Event]:
    types = [
        EventType.TAG_CHANGED,
        EventType.TAG_MISSING,
        EventType.TAG_RESTORED,
        EventType.CHECK_FAILING,
        EventType.TAG_CHANGED,
    ]
    # occurred_at deliberately not in write order for the last one: seq is the order.
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    times.append(T0 + timedelta(seconds=30))
    events = [
        make_event("r.io/a:1" if n % 2 else IMAGE, t, at)
        for n, (t, at) in enumerate(zip(types, times, strict=True))
    ]
    for ev in events:  # one batch per event, as separate checks would write them
        record_evaluations(engine, prepared([Evaluation(present(ev.image), (ev,))], payload))
    return events


def ids(payloads: Sequence[Mapping[str, Any]]) -> list[str]:
    return [p["id"] for p in payloads]


def test_list_events_order_and_payload(engine: Engine, five_events: list[Event]) -> None:
    got = list_events(engine)
    assert ids(got) == [e.id for e in five_events]
    assert got[0] == payload(five_events[0])
    assert ids(list_events(engine, limit=2)) == [e.id for e in five_events[:2]]


def test_list_events_since_id(engine: Engine, five_events: list[Event]) -> None:
    assert ids(list_events(engine, since=five_events[1].id)) == [e.id for e in five_events[2:]]
    assert list_events(engine, since=five_events[-1].id) == []
    with pytest.raises(UnknownEventError):
        list_events(engine, since="01NOSUCHEVENT0000000000000")


def test_list_events_since_time(engine: Engine, five_events: list[Event]) -> None:
    since = T0 + timedelta(seconds=45)
    expected = [e.id for e in five_events if e.occurred_at > since]
    assert ids(list_events(engine, since=since)) == expected
    assert ids(list_events(engine, since="2026-11-27T05:41:05Z")) == expected
    assert ids(list_events(engine, since=T0)) == [e.id for e in five_events[1:]]


def test_list_events_filters(engine: Engine, five_events: list[Event]) -> None:
    changed = [e.id for e in five_events if e.type is EventType.TAG_CHANGED]
    assert ids(list_events(engine, types=["tag.changed"])) == changed
    both = [e.id for e in five_events if e.type in (EventType.TAG_MISSING, EventType.TAG_RESTORED)]
    assert ids(list_events(engine, types=["tag.missing", "tag.restored"])) == both
    assert ids(list_events(engine, image="r.io/a:1")) == [five_events[1].id, five_events[3].id]
    assert ids(
        list_events(engine, since=five_events[0].id, types=["tag.changed"], image=IMAGE)
    ) == [five_events[4].id]


# --- watches --------------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    image: str
    registry: str = "r.io"
    repository: str = "team/app"
    tag: str = "1"
    interval_seconds: float | None = 300.0
    cron: str | None = None


def test_sync_watches(engine: Engine) -> None:
    sync_watches(engine, [Watch("r.io/team/app:1"), Watch("r.io/team/app:2", tag="2")], T0)
    assert [w.image for w in active_watches(engine)] == ["r.io/team/app:1", "r.io/team/app:2"]
    assert active_watches(engine)[0].created_at == T0

    record_evaluations(
        engine, prepared([Evaluation(present("r.io/team/app:2"), changed=True)], payload)
    )
    later = T0 + timedelta(hours=1)
    sync_watches(engine, [Watch("r.io/team/app:1", interval_seconds=None, cron="0 * * * *")], later)
    (only,) = active_watches(engine)
    assert (only.image, only.interval_seconds, only.cron) == ("r.io/team/app:1", None, "0 * * * *")
    assert len(history_for(engine, "r.io/team/app:2")) == 1  # history survives removal

    sync_watches(engine, [Watch("r.io/team/app:1"), Watch("r.io/team/app:2", tag="2")], later)
    back = {w.image: w for w in active_watches(engine)}
    assert set(back) == {"r.io/team/app:1", "r.io/team/app:2"}
    assert back["r.io/team/app:2"].created_at == T0  # reactivated, not re-created

    sync_watches(engine, [], later)
    assert active_watches(engine) == []


def test_a_sync_writes_only_the_watches_that_changed(engine: Engine) -> None:
    writes: list[tuple[str, int]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "BEGIN")):
            writes.append((statement.split()[0].upper(), len(params) if many else 1))

    watches = [Watch(f"r.io/team/app:{n}", tag=str(n)) for n in range(1000)]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        sync_watches(engine, watches, T0)
        assert writes == [("INSERT", 1000)]
        writes.clear()
        later = T0 + timedelta(hours=1)
        sync_watches(engine, watches, later)  # a restart with the same config
        assert writes == []
        watches[7] = replace(watches[7], interval_seconds=60.0)
        sync_watches(engine, watches[:-1], later)
        assert writes == [("INSERT", 1), ("UPDATE", 1)]  # one changed, one gone
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    stored = {w.image: w for w in active_watches(engine)}
    assert len(stored) == 999 and watches[-1].image not in stored
    changed = stored["r.io/team/app:7"]
    assert (changed.interval_seconds, changed.created_at, changed.source) == (60.0, T0, "config")
    assert stored["r.io/team/app:8"] == WatchRow(
        "r.io/team/app:8", "r.io", "team/app", "8", 300.0, None, T0, "config"
    )


def test_sync_watches_per_source(engine: Engine) -> None:
    a, b, c = Watch("r.io/team/app:1"), Watch("r.io/team/app:2", tag="2"), Watch("r.io/x/y:1")
    sync_watches(engine, [a, b], T0)
    sync_watches(engine, [c], T0, source="compose")
    assert {w.image: w.source for w in active_watches(engine)} == {
        a.image: "config",
        b.image: "config",
        c.image: "compose",
    }
    later = T0 + timedelta(hours=1)
    # The config file no longer lists b: b goes, the other source's watch stays.
    sync_watches(engine, [a], later)
    assert {w.image: w.source for w in active_watches(engine)} == {
        a.image: "config",
        c.image: "compose",
    }
    # An image that another source now yields moves to it; its old source's sync leaves it.
    sync_sources(engine, {"config": [a, c], "compose": []}, later)
    assert {w.image: w.source for w in active_watches(engine)} == {
        a.image: "config",
        c.image: "config",
    }


def test_sync_sources_exclusive_retires_the_watches_of_sources_no_longer_named(
    engine: Engine,
) -> None:
    a, b, c = Watch("r.io/team/app:1"), Watch("r.io/x/y:1"), Watch("r.io/x/z:1")
    sync_sources(engine, {"config": [a], "files:deploy": [b], "files:old": [c]}, T0)
    later = T0 + timedelta(hours=1)
    # Not exclusive: a source not named is left as it is.
    sync_sources(engine, {"config": [a]}, later)
    assert sorted(w.image for w in active_watches(engine)) == [a.image, b.image, c.image]
    # Exclusive: these are all the sources; the rest retire, their rows kept.
    sync_sources(engine, {"config": [a], "files:deploy": [b]}, later, exclusive=True)
    assert {w.image: w.source for w in active_watches(engine)} == {
        a.image: "config",
        b.image: "files:deploy",
    }
    with engine.connect() as conn:
        rows = conn.execute(
            text("select active, removed_at, source from watches where image = :i"),
            {"i": c.image},
        ).all()
    assert [(bool(active), source) for active, _, source in rows] == [(False, "files:old")]
    assert rows[0][1] is not None


# --- retention ------------------------------------------------------------------------


def test_prune(engine: Engine) -> None:
    old, new = T0 - timedelta(days=100), T0
    for image in (IMAGE, "r.io/a:1"):
        for n, at in enumerate([old, old + timedelta(days=1), new]):
            if image == "r.io/a:1" and at == new:
                continue  # r.io/a:1 changed last long ago: its latest row must survive
            ev = make_event(image, at=at)
            state = present(image, digest=f"sha256:{n}", at=at)
            record_evaluations(
                engine,
                prepared([Evaluation(state, (ev,), changed=True)], payload, lambda e: ("ops",)),
            )
    with engine.begin() as conn:
        first_delivery = conn.scalar(select(func.min(models.deliveries.c.id)))
        conn.execute(
            insert(models.delivery_attempts).values(
                delivery_id=first_delivery, attempted_at=old, status_code=500
            )
        )

    deleted = prune(engine, older_than=T0 - timedelta(days=90))
    # 4 old events + their 4 deliveries + 1 attempt + 3 old history rows (one kept)
    assert deleted == 4 + 4 + 1 + 3
    assert [r.digest for r in history_for(engine, IMAGE)] == ["sha256:2"]
    assert [r.digest for r in history_for(engine, "r.io/a:1")] == ["sha256:1"]
    assert count_rows(engine, models.events) == 1
    assert count_rows(engine, models.deliveries) == 1
    assert len(load_states(engine)) == 2  # states are never pruned
    assert prune(engine, older_than=T0 - timedelta(days=90)) == 0


def test_list_events_newest_keeps_the_last_ones_oldest_first(
    engine: Engine, five_events: list[Event]
) -> None:
    ids = [e["id"] for e in list_events(engine, limit=2, newest=True)]
    assert ids == [five_events[3].id, five_events[4].id]
    assert [e["id"] for e in list_events(engine, limit=2)] == [
        five_events[0].id,
        five_events[1].id,
    ]
