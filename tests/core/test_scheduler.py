"""monitor.scheduler: one timer heap over every watch, what apply() reports, triggers,
the first run's spread, refused schedules.

The scheduler is never started here: committed watches wait in the heap with their
first due time (the loop's clock), which is what the wiring decides; the firing and the
per-registry lanes are tests/runtime/test_scheduler_lanes.py's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.config import Watch
from monitor.errors import ConfigError
from monitor.reference import parse_reference
from monitor.scheduler import (
    FIRST_RUN_SPREAD,
    WatchScheduler,
    _Cron,
    _Every,
    cron_gap,
    cron_period,
)


def watch(
    ref: str, *, interval: float | None = 300.0, cron: str | None = None, jitter: float = 0.0
) -> Watch:
    return Watch(
        image=parse_reference(ref),
        key=ref,
        interval=None if cron else interval,
        cron=cron,
        jitter=jitter,
        platforms=(),
        webhooks=(),
        missing_after=1,
        failing_after=1,
    )


async def nothing(key: str) -> None:
    raise AssertionError(f"the scheduler is not started, yet {key} ran")


def jobs(scheduler: WatchScheduler) -> dict[str, Any]:
    """Each scheduled watch's entry (trigger, schedule), by key."""
    return {key: scheduler._entries[key] for key in scheduler.keys()}


def due(scheduler: WatchScheduler) -> dict[str, float]:
    """Each watch's current due time in the heap (stale heap items skipped)."""
    entries = scheduler._entries
    return {
        key: at for at, seq, key in scheduler._heap if key in entries and entries[key].seq == seq
    }


A = "r.example/team/a:1"
B = "r.example/team/b:1"
C = "r.example/team/c:1"


def test_apply_counts_added_removed_rescheduled_and_leaves_unchanged_watches_alone() -> None:
    scheduler = WatchScheduler(nothing)
    assert scheduler.apply([watch(A), watch(B)]) == (2, 0, 0)
    assert scheduler.apply([watch(A), watch(B)]) == (0, 0, 0)
    assert scheduler.apply([watch(A), watch(B, interval=60.0), watch(C)]) == (1, 0, 1)
    assert scheduler.apply([watch(B, interval=60.0)]) == (0, 2, 0)
    assert sorted(jobs(scheduler)) == [B]


def test_an_interval_watch_runs_every_interval_without_jitter_unless_asked() -> None:
    scheduler = WatchScheduler(nothing)
    scheduler.apply([watch(A, interval=90.0)])
    assert jobs(scheduler)[A].trigger == _Every(interval=90.0, jitter=0.0)


def test_the_first_run_is_spread_over_at_most_ten_seconds_and_the_jittered_share() -> None:
    scheduler = WatchScheduler(nothing)
    before = time.monotonic()
    # 300 s * 1% = 3 s: the spread is the smaller of that and FIRST_RUN_SPREAD.
    scheduler.apply([watch(A, jitter=0.01), watch(B, jitter=0.5)])
    after = time.monotonic()
    starts = due(scheduler)
    assert before <= starts[A] <= after + 3
    assert before <= starts[B] <= after + FIRST_RUN_SPREAD
    assert FIRST_RUN_SPREAD == 10.0


def test_first_run_now_false_leaves_the_first_run_to_the_trigger() -> None:
    scheduler = WatchScheduler(nothing)
    before = time.monotonic()
    scheduler.apply([watch(A)], first_run_now=False)
    after = time.monotonic()
    assert before + 300 <= due(scheduler)[A] <= after + 300


def test_jitter_is_a_share_of_the_interval_or_of_the_cron_period() -> None:
    scheduler = WatchScheduler(nothing)
    scheduler.apply(
        [watch(A, interval=600.0, jitter=0.1), watch(B, cron="*/5 * * * *", jitter=0.2)]
    )
    interval, cron = jobs(scheduler)[A].trigger, jobs(scheduler)[B].trigger
    assert interval == _Every(interval=600.0, jitter=60.0)
    assert isinstance(cron, _Cron)
    assert cron.trigger.jitter == 60
    assert str(cron.trigger) == (
        "cron[month='*', day='*', day_of_week='*', hour='*', minute='*/5']"
    )
    fires = cron.first(datetime(2026, 12, 1, 10, 2, tzinfo=UTC))
    five = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    assert fires is not None and five <= fires <= five + timedelta(seconds=60)  # its jitter


def test_a_schedule_that_cannot_be_held_is_refused_naming_the_watch_and_nothing_changes() -> None:
    scheduler = WatchScheduler(nothing)
    scheduler.apply([watch(A)])
    with pytest.raises(ConfigError) as refused:
        scheduler.apply([watch(B), watch(C, interval=1e20)])
    assert str(refused.value).startswith(f"watch {C}: cannot be scheduled: ")
    with pytest.raises(ConfigError) as never:
        scheduler.apply([watch(B, cron="0 0 30 feb *")])
    assert str(never.value) == f"watch {B}: its schedule never fires"
    assert sorted(jobs(scheduler)) == [A]


def test_plan_changes_nothing_until_commit() -> None:
    scheduler = WatchScheduler(nothing)
    plan = scheduler.plan([watch(A), watch(B)])
    assert [(w.key, new) for w, _, new in plan.changes] == [(A, True), (B, True)]
    assert plan.removed == ()
    assert jobs(scheduler) == {}
    assert scheduler.commit(plan) == (2, 0, 0)
    assert scheduler.plan([watch(B)]).removed == (A,)


def test_cron_gap_and_period() -> None:
    now = datetime(2026, 12, 1, 10, 2, 30, tzinfo=UTC)
    assert cron_gap("*/5 * * * *", now) == (300.0, datetime(2026, 12, 1, 10, 5, tzinfo=UTC))
    assert cron_gap("0 3 * * mon", now) == (
        7 * 86400.0,
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
    )
    assert cron_gap("0 0 30 feb *", now) is None
    assert cron_period("0 * * * *") == 3600.0
    assert cron_period("0 0 30 feb *") == 0.0
