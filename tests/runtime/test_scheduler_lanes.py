"""The watch scheduler: one timer for every watch, a bounded lane of check tasks per registry."""

from __future__ import annotations

import asyncio
from collections import Counter

from monitor.config import parse_config, resolve_watches
from monitor.scheduler import LANE_DEPTH, TICK_BATCH, WatchScheduler

FAST = "127.0.0.1:9"
SLOW = "127.0.0.1:10"


def watches(count: int, host: str, interval: str = "1h") -> list:
    refs = "".join(f"  - image: {host}/lane/app{i}:v1\n" for i in range(count))
    config = parse_config(
        f"defaults: {{interval: {interval}, jitter: 0%}}\nwatch:\n{refs}", source="test.yaml"
    )
    return list(resolve_watches(config))


class Checks:
    """A run_check that holds every check until released, counting what runs at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running: Counter[str] = Counter()  # registry -> checks running now
        self.peak: Counter[str] = Counter()
        self.done: Counter[str] = Counter()  # key -> checks finished

    async def __call__(self, key: str) -> None:
        host = key.split("/")[0]
        self.running[host] += 1
        self.peak[host] = max(self.peak[host], self.running[host])
        try:
            await self.release.wait()
        finally:
            self.running[host] -= 1
        self.done[key] += 1


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_due_checks_wait_as_keys_not_tasks_and_each_registry_has_its_own_lane() -> None:
    """2,000 watches due at once on a registry of 4 slots: 8 check tasks, 1,992 keys in
    its lane; the other registry's 10 watches do not wait behind them."""

    async def main() -> None:
        checks = Checks()
        limits = {FAST: 4, SLOW: 1}
        scheduler = WatchScheduler(checks, concurrency=lambda host: limits[host])
        scheduler.commit(scheduler.plan(watches(2000, FAST) + watches(10, SLOW)))
        scheduler.start()
        await until(lambda: checks.running[FAST] == 4 * LANE_DEPTH)
        await until(lambda: checks.running[SLOW] == 1 * LANE_DEPTH)
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("regmon-check ")]
        assert len(tasks) == 4 * LANE_DEPTH + 1 * LANE_DEPTH
        assert scheduler.queued() == (2000 - 8) + (10 - 2)
        checks.release.set()
        await until(lambda: sum(checks.done.values()) == 2010)
        assert set(checks.done.values()) == {1}  # each watch checked once
        assert checks.peak == {FAST: 8, SLOW: 2}
        assert scheduler.queued() == 0
        scheduler.shutdown()

    asyncio.run(main())


def test_a_watch_still_running_when_due_again_is_not_queued_twice() -> None:
    async def main() -> None:
        checks = Checks()
        scheduler = WatchScheduler(checks, concurrency=lambda host: 8)
        [watch] = watches(1, FAST, interval="1s")
        scheduler.commit(scheduler.plan([watch]))
        scheduler.start()
        await until(lambda: checks.running[FAST] == 1)
        # Due again twice while its first check hangs: coalesced, not queued.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(lambda: loop.time() - started > 2.2)
        assert checks.running[FAST] == 1
        assert scheduler.queued() == 0
        checks.release.set()
        await until(lambda: checks.done[watch.key] == 1)
        scheduler.shutdown()

    asyncio.run(main())


def test_drop_queued_counts_what_never_started_and_stops_firing() -> None:
    async def main() -> None:
        checks = Checks()
        scheduler = WatchScheduler(checks, concurrency=lambda host: 2)
        scheduler.commit(scheduler.plan(watches(50, FAST)))
        scheduler.start()
        await until(lambda: checks.running[FAST] == 2 * LANE_DEPTH)
        assert scheduler.drop_queued() == 50 - 4
        assert not scheduler.running
        checks.release.set()
        await until(lambda: sum(checks.done.values()) == 4)
        await asyncio.sleep(0.05)  # a freed lane slot must not start a dropped check
        assert sum(checks.done.values()) == 4
        scheduler.shutdown()

    asyncio.run(main())


def test_removed_and_rescheduled_watches() -> None:
    async def main() -> None:
        checks = Checks()
        checks.release.set()
        scheduler = WatchScheduler(checks, concurrency=lambda host: 8)
        first = watches(3, FAST)
        assert scheduler.commit(scheduler.plan(first), first_run_now=False) == (3, 0, 0)
        assert scheduler.plan(first).changes == ()  # same schedules: nothing to do
        faster = watches(2, FAST, interval="1s")  # app0, app1 rescheduled; app2 removed
        assert scheduler.commit(scheduler.plan(faster)) == (0, 1, 2)
        scheduler.start()
        await until(lambda: checks.done[faster[0].key] >= 2 and checks.done[faster[1].key] >= 2)
        assert checks.done[first[2].key] == 0
        scheduler.shutdown()

    asyncio.run(main())


def test_watches_due_at_once_reach_their_lanes_in_batches_between_turns_of_the_loop() -> None:
    """5,000 watches due at once (a start with no jitter): one timer callback queues at
    most TICK_BATCH of them, so the event loop (and the HTTP server on it) gets a turn
    between batches instead of waiting for all of them."""

    async def main() -> None:
        checks = Checks()
        scheduler = WatchScheduler(checks, concurrency=lambda host: 4)
        scheduler.commit(scheduler.plan(watches(5000, FAST)))
        scheduler.start()
        seen: list[int] = []
        async with asyncio.timeout(10):
            while not seen or seen[-1] < 5000 - 4 * LANE_DEPTH:
                await asyncio.sleep(0)
                seen.append(scheduler.queued())
        running = 4 * LANE_DEPTH
        assert [n for n in dict.fromkeys(seen) if n] == [
            TICK_BATCH - running,
            2 * TICK_BATCH - running,
            5000 - running,
        ]
        checks.release.set()
        await until(lambda: sum(checks.done.values()) == 5000)
        assert set(checks.done.values()) == {1}
        scheduler.shutdown()

    asyncio.run(main())
