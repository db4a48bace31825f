"""APScheduler wiring only: one job per watch, explicit id, coalesced, one instance."""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["SchedulePlan", "Scheduled", "WatchScheduler", "cron_gap", "cron_period"]


class Scheduled(Protocol):
    """What gets a job: a tag watch (``Watch``) or a repository listing (``RepositoryWatch``)."""

    @property
    def key(self) -> str: ...
    @property
    def interval(self) -> float | None: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def jitter(self) -> float: ...


FIRST_RUN_SPREAD = 10.0  # seconds: the first cycle starts within this, not all at once


def cron_gap(cron: str, now: datetime) -> tuple[float, datetime] | None:
    """Seconds between the next two fire times after ``now``, and the first of them
    (the gap holds until then); None if the expression never fires twice."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first) if first else None
    if first is None or second is None:
        return None
    return float((second - first).total_seconds()), first


def cron_period(cron: str) -> float:
    """Seconds between the next two fire times of a crontab expression (0 if none)."""
    gap = cron_gap(cron, datetime.now(UTC))
    return gap[0] if gap else 0.0


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """Jobs to add or reschedule (watch, its built trigger, is new) and keys to remove."""

    changes: tuple[tuple[Scheduled, Any, bool], ...]
    removed: tuple[str, ...]


def _schedule(watch: Scheduled) -> tuple[float | None, str | None, float]:
    return (watch.interval, watch.cron, watch.jitter)


class WatchScheduler:
    """Keeps the scheduler's jobs equal to the config's watches."""

    def __init__(self, run_check: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._run_check = run_check
        self._scheduler: AsyncIOScheduler = AsyncIOScheduler(timezone=UTC)
        self._schedules: dict[str, tuple[float | None, str | None, float]] = {}

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def keys(self) -> list[str]:
        """The keys that have a job, in the order they were added."""
        return list(self._schedules)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        # AsyncIOScheduler.shutdown() does not wait for running jobs; the service drains.
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def apply(
        self, watches: Sequence[Scheduled], *, first_run_now: bool = True
    ) -> tuple[int, int, int]:
        """Add, remove and reschedule jobs; return (added, removed, rescheduled).

        ``ConfigError`` (and no job changed) when a watch's schedule cannot be held.
        """
        return self.commit(self.plan(watches), first_run_now=first_run_now)

    def plan(self, watches: Sequence[Scheduled]) -> SchedulePlan:
        """What ``commit`` will change, with every trigger built and tried; changes nothing.

        A schedule APScheduler cannot hold (an interval past ``datetime``'s range, a
        cron that never fires) is a ``ConfigError`` naming the watch, here, before
        anything is changed, so a reload can be refused as a whole.
        """
        from monitor.errors import ConfigError

        wanted = {w.key: w for w in watches}
        now = datetime.now(UTC)
        changes: list[tuple[Scheduled, Any, bool]] = []
        for key, watch in wanted.items():
            old = self._schedules.get(key)
            if old == _schedule(watch):
                continue
            try:
                trigger = self._trigger(watch)
                fires = trigger.get_next_fire_time(None, now)
            except (OverflowError, ValueError) as exc:
                raise ConfigError(f"watch {key}: cannot be scheduled: {exc}") from None
            if fires is None:
                raise ConfigError(f"watch {key}: its schedule never fires")
            changes.append((watch, trigger, old is None))
        gone = [key for key in self._schedules if key not in wanted]
        return SchedulePlan(tuple(changes), tuple(gone))

    def commit(self, plan: SchedulePlan, *, first_run_now: bool = True) -> tuple[int, int, int]:
        """Apply a ``plan``; return (added, removed, rescheduled)."""
        for key in plan.removed:
            self._scheduler.remove_job(key)
            del self._schedules[key]
        added = rescheduled = 0
        for watch, trigger, new in plan.changes:
            key = watch.key
            if new:
                spread = min(FIRST_RUN_SPREAD, (watch.interval or 60.0) * watch.jitter)
                start = datetime.now(UTC) + timedelta(seconds=random.uniform(0, spread))  # noqa: S311
                self._scheduler.add_job(
                    self._run_check,
                    trigger,
                    args=[key],
                    id=key,
                    name=key,
                    replace_existing=True,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=max(int(watch.interval or 60), 1),
                    next_run_time=start if first_run_now else None,
                )
                added += 1
            else:
                self._scheduler.reschedule_job(key, trigger=trigger)
                rescheduled += 1
            self._schedules[key] = _schedule(watch)
        return added, len(plan.removed), rescheduled

    @staticmethod
    def _trigger(watch: Scheduled) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if watch.cron:
            period = cron_period(watch.cron)
            jitter = int(period * watch.jitter) or None
            return CronTrigger(**_cron_fields(watch.cron), timezone=UTC, jitter=jitter)
        interval = watch.interval or 300.0
        return IntervalTrigger(
            seconds=interval, jitter=(interval * watch.jitter) or None, timezone=UTC
        )


def _cron_fields(cron: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = cron.split()
    return {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": day_of_week,
    }
