"""When each watch is checked: one timer for every watch, and a bounded lane per registry.

APScheduler held one job per watch (about 0.7 KB each, and its memory job store
made the first wakeup at 50,000 watches O(n²)), and started one task per due
watch: 50,000 tasks waiting for a registry's 8 slots, ~3 KB each. Here a watch
is one small entry in a heap ordered by its next due time, and one
``call_at`` timer stands for the earliest; a due watch joins its registry's
lane, which runs at most ``LANE_DEPTH`` times that registry's ``max_concurrency``
checks as tasks at once (enough to keep every slot busy), the rest waiting as
keys. A watch that is still queued or running when it falls due again is not
queued twice (APScheduler's ``coalesce`` and ``max_instances=1``).

Cron expressions still use APScheduler's ``CronTrigger`` for their fire times.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["LANE_DEPTH", "SchedulePlan", "Scheduled", "WatchScheduler", "cron_gap", "cron_period"]


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


log = logging.getLogger("regmon.scheduler")

FIRST_RUN_SPREAD = 10.0  # seconds: the first cycle starts within this, not all at once
# Checks of one registry running as tasks at once, per slot of its max_concurrency: one
# holding each slot and one waiting to take it, so a finished check's slot is never idle.
LANE_DEPTH = 2
# Due watches one timer callback hands to the lanes before it yields to the event loop:
# 50,000 due at once (a start with no jitter) would hold the loop, and the HTTP server
# with it, for ~0.2 s; the next batch runs on the loop's next turn.
TICK_BATCH = 2000


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


class _Trigger(Protocol):
    def first(self, now: datetime) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class _Every:
    """Every ``interval`` seconds, each run up to ``jitter`` seconds late (never early)."""

    interval: float
    jitter: float

    def first(self, now: datetime) -> datetime | None:
        return now + timedelta(seconds=self.interval)  # OverflowError past datetime's range


@dataclass(frozen=True, slots=True)
class _Cron:
    trigger: Any  # apscheduler.triggers.cron.CronTrigger (UTC, with its jitter)

    def first(self, now: datetime) -> datetime | None:
        fires: datetime | None = self.trigger.get_next_fire_time(None, now)
        return fires


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """Watches to add or reschedule (watch, its built trigger, is new) and keys to remove."""

    changes: tuple[tuple[Scheduled, Any, bool], ...]
    removed: tuple[str, ...]


def _schedule(watch: Scheduled) -> tuple[float | None, str | None, float]:
    return (watch.interval, watch.cron, watch.jitter)


class _Entry:
    """One watch: its trigger, its registry's lane, and where it stands in the heap."""

    __slots__ = ("base", "lane", "last_fire", "schedule", "seq", "trigger")

    def __init__(
        self, schedule: tuple[float | None, str | None, float], trigger: Any, lane: str
    ) -> None:
        self.schedule = schedule
        self.trigger = trigger
        self.lane = lane
        self.seq = 0  # which heap item is this entry's current one (older ones are stale)
        self.base = 0.0  # loop time of the last planned run (intervals: no drift)
        self.last_fire: datetime | None = None  # cron: the last fire time, for the next


class _Lane:
    __slots__ = ("queue", "running")

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.running = 0


class WatchScheduler:
    """Keeps one timer entry per configured watch and runs due checks lane by lane."""

    def __init__(
        self,
        run_check: Callable[[str], Coroutine[Any, Any, None]],
        *,
        concurrency: Callable[[str], int] | None = None,
    ) -> None:
        """``concurrency(registry host key)``: that registry's ``max_concurrency`` now."""
        self._run_check = run_check
        self._concurrency = concurrency or (lambda _host: 8)
        # Each distinct schedule once: the entries of 50,000 watches share a handful.
        self._interned: dict[tuple[float | None, str | None, float], Any] = {}
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._lanes: dict[str, _Lane] = {}
        self._busy: set[str] = set()  # queued in a lane or running
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def keys(self) -> list[str]:
        """The keys that have a job, in the order they were added."""
        return list(self._entries)

    def queued(self) -> int:
        """Due checks waiting in their lanes (not yet running as tasks)."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._arm()

    def drop_queued(self) -> int:
        """Stop firing and forget the due checks not yet started; return how many.
        Checks running go on (``shutdown`` cancels what is left of them)."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dropped = 0
        for lane in self._lanes.values():
            dropped += len(lane.queue)
            for key in lane.queue:
                self._busy.discard(key)
            lane.queue.clear()
        return dropped

    def shutdown(self) -> None:
        """Stop firing; drop queued checks and cancel those still running (the service
        drains the ones it wants finished before calling this)."""
        self.drop_queued()
        for task in list(self._tasks):
            task.cancel()

    def apply(
        self, watches: Sequence[Scheduled], *, first_run_now: bool = True
    ) -> tuple[int, int, int]:
        """Add, remove and reschedule watches; return (added, removed, rescheduled).

        ``ConfigError`` (and nothing changed) when a watch's schedule cannot be held.
        """
        return self.commit(self.plan(watches), first_run_now=first_run_now)

    def plan(self, watches: Sequence[Scheduled]) -> SchedulePlan:
        """What ``commit`` will change, with every trigger built and tried; changes nothing.

        A schedule that cannot be held (an interval past ``datetime``'s range, a
        cron that never fires) is a ``ConfigError`` naming the watch, here, before
        anything is changed, so a reload can be refused as a whole.
        """
        from monitor.errors import ConfigError

        wanted = {w.key: w for w in watches}
        now = datetime.now(UTC)
        changes: list[tuple[Scheduled, Any, bool]] = []
        built: dict[tuple[float | None, str | None, float], Any] = {}
        for key, watch in wanted.items():
            schedule = _schedule(watch)
            entry = self._entries.get(key)
            old = entry.schedule if entry is not None else None
            if old == schedule:
                continue
            # One trigger built and tried per distinct schedule (50,000 watches have a
            # handful), shared by every watch that has it (triggers hold no state).
            trigger = built.get(schedule)
            if trigger is None:
                try:
                    trigger = self._trigger(watch)
                    if trigger.first(now) is None:
                        raise ConfigError(f"watch {key}: its schedule never fires")
                except (OverflowError, ValueError) as exc:
                    raise ConfigError(f"watch {key}: cannot be scheduled: {exc}") from None
                built[schedule] = trigger
            changes.append((watch, trigger, old is None))
        gone = [key for key in self._entries if key not in wanted]
        return SchedulePlan(tuple(changes), tuple(gone))

    def commit(self, plan: SchedulePlan, *, first_run_now: bool = True) -> tuple[int, int, int]:
        """Apply a ``plan``; return (added, removed, rescheduled)."""
        for key in plan.removed:
            del self._entries[key]  # its heap item is now stale, skipped when it surfaces
        now = self._now()
        wall = datetime.now(UTC)
        added = rescheduled = 0
        for watch, trigger, new in plan.changes:
            key = watch.key
            entry = self._entries.get(key)
            schedule = self._interned.setdefault(_schedule(watch), _schedule(watch))
            if entry is None:
                entry = self._entries[key] = _Entry(schedule, trigger, _registry(watch))
            else:
                entry.schedule, entry.trigger = schedule, trigger
            entry.base = now
            entry.last_fire = None
            if new and first_run_now:
                spread = min(FIRST_RUN_SPREAD, (watch.interval or 60.0) * watch.jitter)
                due = now + random.uniform(0, spread)  # noqa: S311
            else:
                due = self._next_due(entry, now, wall)
            self._push(key, entry, due)
            if new:
                added += 1
            else:
                rescheduled += 1
        if len(self._heap) > 2 * len(self._entries) + 1024:
            self._compact()
        self._arm()
        return added, len(plan.removed), rescheduled

    @staticmethod
    def _trigger(watch: Scheduled) -> Any:
        if watch.cron:
            from apscheduler.triggers.cron import CronTrigger

            period = cron_period(watch.cron)
            jitter = int(period * watch.jitter) or None
            return _Cron(CronTrigger(**_cron_fields(watch.cron), timezone=UTC, jitter=jitter))
        interval = watch.interval or 300.0
        return _Every(interval, interval * watch.jitter)

    # -- the timer ---------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                import time

                return time.monotonic()  # the loop's clock, before the loop runs
        return loop.time()

    def _next_due(self, entry: _Entry, now: float, wall: datetime) -> float:
        trigger = entry.trigger
        if isinstance(trigger, _Every):
            base = entry.base + trigger.interval
            if base < now:  # behind (a stalled loop): run once now, not once per missed run
                base = now
            entry.base = base
            return base + (random.uniform(0, trigger.jitter) if trigger.jitter else 0.0)  # noqa: S311
        previous = entry.last_fire
        cron = trigger.trigger
        fires: datetime | None = cron.get_next_fire_time(previous, max(wall, previous or wall))
        if fires is None:  # pragma: no cover - plan() refused schedules that never fire
            return float("inf")
        if previous is not None and fires <= previous:
            fires = cron.get_next_fire_time(previous, previous + timedelta(seconds=1))
        entry.last_fire = fires
        return now + max(0.0, (fires - wall).total_seconds())

    def _push(self, key: str, entry: _Entry, due: float) -> None:
        self._seq += 1
        entry.seq = self._seq
        heapq.heappush(self._heap, (due, self._seq, key))

    def _compact(self) -> None:
        self._heap = [
            item
            for item in self._heap
            if (entry := self._entries.get(item[2])) is not None and entry.seq == item[1]
        ]
        heapq.heapify(self._heap)

    def _arm(self) -> None:
        if not self._running or self._loop is None or not self._heap:
            return
        at = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self._running:
            return
        now = self._now()
        wall = datetime.now(UTC)
        heap = self._heap
        touched: set[str] = set()
        for _ in range(TICK_BATCH):
            if not heap or heap[0][0] > now:
                break
            _, seq, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is None or entry.seq != seq:
                continue  # removed or rescheduled since
            self._push(key, entry, self._next_due(entry, now, wall))
            if key in self._busy:
                continue  # still queued or running: one check per watch at a time
            self._busy.add(key)
            self._lane(entry.lane).queue.append(key)
            touched.add(entry.lane)
        for name in touched:
            self._pump(name)
        self._arm()

    # -- lanes -------------------------------------------------------------------------

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane()
        return lane

    def _pump(self, name: str) -> None:
        lane = self._lanes[name]
        if not lane.queue or not self._running or self._loop is None:
            return
        cap = max(1, self._concurrency(name)) * LANE_DEPTH
        while lane.running < cap and lane.queue:
            key = lane.queue.popleft()
            lane.running += 1
            task = self._loop.create_task(self._run(name, lane, key), name=f"regmon-check {key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str, lane: _Lane, key: str) -> None:
        try:
            if key in self._entries:  # not removed while it waited
                await self._run_check(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduled check of %s failed", key)
        finally:
            lane.running -= 1
            self._busy.discard(key)
            self._pump(name)


def _registry(item: Scheduled) -> str:
    """The lane of a watch (its image's registry) or of a listing (its repository's)."""
    target = getattr(item, "image", None) or getattr(item, "repository", None)
    return sys.intern(target.domain.lower()) if target is not None else ""


def _cron_fields(cron: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = cron.split()
    return {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": day_of_week,
    }
