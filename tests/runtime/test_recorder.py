"""The recorder's queue while the database fails: coalesced, capped, counted, backed off.

The write callable is a narrow fake (a switch between raising the store's error
and recording the batch); the database faults themselves are exercised end to
end in tests/e2e/test_service_database_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
import sqlalchemy.exc
from prometheus_client import CollectorRegistry

from monitor.config import parse_config, resolve_watches
from monitor.domain import Status
from monitor.metrics import Metrics
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.runtime.recorder import Recorder
from monitor.store.engine import DatabaseUnavailable, StoreError
from monitor.store.repository import Record, Recorded

CONFIG = parse_config(
    "database: sqlite:///unused.db\nwatch:\n"
    + "".join(f"  - image: registry.test/app/a{i}:v1\n" for i in range(10))
)
WATCHES = {w.key: w for w in resolve_watches(CONFIG)}
KEYS = list(WATCHES)
FULL = "database or disk is full"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


# A value bound into the failing statement: distinctive, so any leak of the SQL's
# parameters into the log shows (a word like "secret" could be there by chance).
BOUND = "rec0rder-B0und-Qx7"


class FakeView:
    config = CONFIG

    def watches(self) -> Sequence[object]:
        return []

    def states(self) -> dict[str, TagState]:
        return {}

    def is_leader(self) -> bool:
        return True


class Store:
    def __init__(self) -> None:
        self.failing = True
        self.batches: list[list[Record]] = []

    def write(self, batch: Sequence[Record]) -> Recorded:
        if self.failing:
            # What the store raises: its error from SQLAlchemy's, which names the SQL.
            cause = sqlalchemy.exc.OperationalError(
                "INSERT INTO events VALUES (?)", (BOUND,), sqlite3.OperationalError(FULL)
            )
            raise StoreError(
                f"database sqlite:///x.db: record_evaluations failed: {FULL}"
            ) from cause
        self.batches.append(list(batch))
        return Recorded()


def unrouted(evaluation: Evaluation, _watch: object) -> Record:
    # The bodies do not matter here: only what is written, and when.
    return Record(evaluation, payloads=tuple({} for _ in evaluation.events))


def trivial(key: str, n: int) -> Evaluation:
    return Evaluation(TagState(key, status=Status.PRESENT, consecutive_misses=n))


def with_event(key: str, n: int) -> Evaluation:
    event = Event(id=f"ev{n}", type=EventType.TAG_CHANGED, occurred_at=NOW, image=key)
    return Evaluation(TagState(key, status=Status.PRESENT), events=(event,), changed=True)


def test_results_of_a_watch_coalesce_and_the_cap_drops_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, FakeView())  # type: ignore[arg-type]
    store = Store()

    async def main() -> None:
        recorder = Recorder(store.write, prepare=unrouted, metrics=metrics, max_pending=4)
        # Only last_checked moves: one entry per watch, however many checks wait.
        for n in range(50):
            recorder.add(trivial(KEYS[0], n), WATCHES[KEYS[0]])
        assert recorder.pending == 1
        # A result with an event carries the state the trivial one before it had; it is
        # kept, and the next trivial result does not replace it (order holds).
        recorder.add(with_event(KEYS[0], 100), WATCHES[KEYS[0]])
        recorder.add(trivial(KEYS[0], 51), WATCHES[KEYS[0]])
        assert recorder.pending == 2
        with pytest.raises(
            DatabaseUnavailable, match=r"^database unavailable: database or disk is full$"
        ):
            await recorder.flush()
        assert recorder.failure == FULL
        assert registry.get_sample_value("regmon_database_up") == 0
        assert recorder.pending == 2  # kept for the next attempt
        # Over the cap of 4: the oldest go, counted.
        for n in range(3):
            recorder.add(with_event(KEYS[n + 1], 200 + n), WATCHES[KEYS[n + 1]])
        assert recorder.pending == 4
        assert (recorder.dropped, recorder.dropped_events) == (1, 1)
        assert registry.get_sample_value("regmon_pending_results_dropped_total") == 1
        assert registry.get_sample_value("regmon_pending_results") == 4

        store.failing = False
        await recorder.flush()
        assert recorder.failure is None
        assert registry.get_sample_value("regmon_database_up") == 1
        assert registry.get_sample_value("regmon_pending_results") == 0

    with caplog.at_level(logging.INFO, logger="regmon"):
        asyncio.run(main())
    [batch] = store.batches
    assert [(p.evaluation.state.image, p.evaluation.state.consecutive_misses) for p in batch] == [
        (KEYS[0], 51),
        (KEYS[1], 0),
        (KEYS[2], 0),
        (KEYS[3], 0),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "dropping the oldest" in m] == [
        "database: 4 results wait to be written, the most kept in memory; dropping the oldest "
        "(counted in regmon_pending_results_dropped_total)"
    ]
    assert (
        messages[0]
        == "database write failed: database or disk is full; 2 results kept, retrying in 0.4s"
    )
    assert messages[-1].startswith("database writable again after 0s: wrote 4 pending results")
    assert not any(r.exc_info for r in caplog.records)
    assert "INSERT" not in caplog.text and BOUND not in caplog.text


def test_the_writer_backs_off_exponentially_to_the_cap_and_logs_each_attempt_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()

    async def main() -> None:
        recorder = Recorder(store.write, prepare=unrouted, interval=0.05, backoff_cap=0.4)
        recorder.add(with_event(KEYS[0], 1), WATCHES[KEYS[0]])
        recorder.start()
        while len([r for r in caplog.records if "write failed" in r.getMessage()]) < 5:
            await asyncio.sleep(0.01)
        store.failing = False
        while recorder.pending:
            await asyncio.sleep(0.01)
        await recorder.close(1.0)

    with caplog.at_level(logging.INFO, logger="regmon"):
        asyncio.run(main())
    delays = [
        float(match.group(1))
        for r in caplog.records
        if (match := re.search(r"retrying in ([\d.]+)s$", r.getMessage()))
    ]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert len(store.batches) == 1
    assert "lost" not in caplog.text


def test_a_backlog_is_written_in_bounded_transactions_and_a_failed_one_keeps_the_rest() -> None:
    store = Store()
    store.failing = False
    calls = 0

    def write(batch: Sequence[Record]) -> Recorded:
        nonlocal calls
        calls += 1
        store.failing = calls == 2  # the second transaction fails
        return store.write(batch)

    async def main() -> Recorder:
        recorder = Recorder(write, prepare=unrouted, batch=2)
        for n in range(5):
            recorder.add(with_event(KEYS[n], n), WATCHES[KEYS[n]])
        with pytest.raises(DatabaseUnavailable):
            await recorder.flush()
        assert recorder.pending == 3
        await recorder.flush()
        return recorder

    recorder = asyncio.run(main())
    assert recorder.pending == 0
    written = [[p.evaluation.state.image for p in batch] for batch in store.batches]
    assert written == [KEYS[0:2], KEYS[2:4], KEYS[4:5]]
