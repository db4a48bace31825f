"""The dynamic-targets seam: a source whose targets change at run time (monitor.runtime.targets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine

from monitor.config import Watch, parse_config, resolve_watches
from monitor.runtime.targets import DynamicSource, TargetChange, Targets
from monitor.scheduler import WatchScheduler
from monitor.sources.base import ConfigSource, WatchSource
from monitor.store.engine import make_engine, upgrade
from monitor.store.repository import active_watches, sync_sources

CONFIG = parse_config(
    "database: sqlite:///unused.db\ndefaults: {interval: 1h, jitter: 0%}\n"
    "watch:\n  - image: r.io/team/a:1\n"
)
BASE = resolve_watches(CONFIG)[0]


class Listing:
    """A dynamic source of tags of r.io/team/app, as a repository listing hands them over."""

    def __init__(self, name: str = "repository:r.io/team/app") -> None:
        self.name = name
        self.tags: list[str] = []

    def targets(self) -> Sequence[Watch]:
        image = BASE.image
        return [
            replace(
                BASE,
                image=replace(image, path="team/app", tag=tag),
                key=f"r.io/team/app:{tag}",
                source=self.name,
            )
            for tag in self.tags
        ]

    def carry_over(self, previous: WatchSource) -> None:
        if isinstance(previous, Listing):
            self.tags = list(previous.tags)

    def seed(self, stored: Sequence[str]) -> None:
        self.tags = [key.rpartition(":")[2] for key in stored]


def _row(watch: Watch) -> SimpleNamespace:
    image = watch.image
    return SimpleNamespace(
        image=watch.key,
        registry=image.registry,
        repository=image.repository,
        tag=image.tag,
        interval_seconds=watch.interval,
        cron=watch.cron,
    )


async def _noop(key: str) -> None:  # pragma: no cover - jobs never run in these tests
    return None


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'regmon.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def test_an_update_syncs_its_source_schedules_and_tells_the_service(engine: Engine) -> None:
    listing = Listing()
    assert isinstance(listing, DynamicSource)
    seen: list[list[str]] = []

    async def main() -> None:
        scheduler = WatchScheduler(_noop)
        sources: list[WatchSource] = [ConfigSource(CONFIG), listing]

        async def sync(rows: Mapping[str, Sequence[Watch]]) -> None:
            sync_sources(
                engine,
                {name: [_row(w) for w in ws] for name, ws in rows.items()},
                datetime.now(UTC),
            )

        targets = Targets(
            sources, scheduler=scheduler, sync=sync, on_change=lambda w: seen.append(list(w))
        )
        scheduler.commit(scheduler.plan(list(targets.watches.values())), first_run_now=False)
        await sync(targets.rows_for(sources))
        scheduler.start()
        try:
            listing.tags = ["1.0", "1.1"]
            change = await targets.update(listing)
            assert change == TargetChange(added=("r.io/team/app:1.0", "r.io/team/app:1.1"))
            listing.tags = ["1.1", "1.2"]
            change = await targets.update(listing)
            assert change == TargetChange(
                added=("r.io/team/app:1.2",), removed=("r.io/team/app:1.0",)
            )
            assert scheduler.keys() == [
                "r.io/team/a:1",
                "r.io/team/app:1.1",
                "r.io/team/app:1.2",
            ]
            # A source a reload replaced hands over nothing: its successor carries on.
            successor = Listing()
            successor.carry_over(listing)
            targets.commit([ConfigSource(CONFIG), successor])
            listing.tags = []
            assert await targets.update(listing) is None
            assert list(targets.watches) == [
                "r.io/team/a:1",
                "r.io/team/app:1.1",
                "r.io/team/app:1.2",
            ]
        finally:
            scheduler.shutdown()

    asyncio.run(main())
    assert seen == [
        ["r.io/team/a:1", "r.io/team/app:1.0", "r.io/team/app:1.1"],
        ["r.io/team/a:1", "r.io/team/app:1.1", "r.io/team/app:1.2"],
        ["r.io/team/a:1", "r.io/team/app:1.1", "r.io/team/app:1.2"],
    ]
    rows = {row.image: row.source for row in active_watches(engine)}
    assert rows == {
        "r.io/team/a:1": "config",
        "r.io/team/app:1.1": "repository:r.io/team/app",
        "r.io/team/app:1.2": "repository:r.io/team/app",
    }


def test_rows_for_retires_the_watches_of_a_source_no_longer_named() -> None:
    listing = Listing()
    listing.tags = ["1.0"]
    targets = Targets(
        [ConfigSource(CONFIG), listing],
        scheduler=WatchScheduler(_noop),
        sync=lambda rows: asyncio.sleep(0),
        on_change=lambda w: None,
    )
    rows = targets.rows_for([ConfigSource(CONFIG)])
    assert {name: [w.key for w in ws] for name, ws in rows.items()} == {
        "config": ["r.io/team/a:1"],
        "repository:r.io/team/app": [],
    }


def test_a_follower_follows_what_the_store_holds_and_writes_nothing() -> None:
    listing = Listing()
    seen: list[list[str]] = []
    written: list[Mapping[str, Sequence[Watch]]] = []

    async def main() -> list[TargetChange]:
        scheduler = WatchScheduler(_noop)

        async def sync(rows: Mapping[str, Sequence[Watch]]) -> None:  # pragma: no cover
            written.append(rows)

        targets = Targets(
            [ConfigSource(CONFIG), listing],
            scheduler=scheduler,
            sync=sync,
            on_change=lambda w: seen.append(list(w)),
        )
        scheduler.commit(scheduler.plan(list(targets.watches.values())), first_run_now=False)
        name = listing.name
        changes = [
            await targets.follow({name: ["r.io/team/app:1.0", "r.io/team/app:1.1"]}),
            await targets.follow({name: ["r.io/team/app:1.0", "r.io/team/app:1.1"]}),
            await targets.follow({"config": ["r.io/team/a:1"], name: ["r.io/team/app:1.1"]}),
        ]
        assert scheduler.keys() == ["r.io/team/a:1", "r.io/team/app:1.1"]
        return changes

    changes = asyncio.run(main())
    assert changes == [
        TargetChange(added=("r.io/team/app:1.0", "r.io/team/app:1.1")),
        TargetChange(),  # unchanged: the service is not told
        TargetChange(removed=("r.io/team/app:1.0",)),
    ]
    assert seen == [
        ["r.io/team/a:1", "r.io/team/app:1.0", "r.io/team/app:1.1"],
        ["r.io/team/a:1", "r.io/team/app:1.1"],
    ]
    assert written == []  # the leader's listings wrote these
