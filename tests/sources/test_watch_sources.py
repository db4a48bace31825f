"""The watch-source seam and the coordinator port, with today's one implementation each."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from monitor.config import parse_config, resolve_watches
from monitor.domain import Status
from monitor.records import Evaluation, TagState
from monitor.runtime.leader import Coordinator, SingleProcess
from monitor.runtime.recorder import Recorder
from monitor.sources.all import sources_for
from monitor.sources.base import ConfigSource, WatchSource, targets_of
from monitor.store.repository import Record, Recorded

CONFIG = parse_config(
    "database: sqlite:///unused.db\nwatch:\n  - image: r.io/team/a:1\n  - image: r.io/team/b:1\n"
)


class Listed:
    def __init__(self, name: str, config: str) -> None:
        self.name = name
        self._config = parse_config(config)

    def targets(self) -> list[object]:
        return [replace(w, source=self.name) for w in resolve_watches(self._config)]


def test_the_config_file_is_the_first_source_and_its_targets_say_so() -> None:
    [source] = sources_for(CONFIG)
    assert isinstance(source, ConfigSource) and source.name == "config"
    assert [(w.key, w.source) for w in source.targets()] == [
        ("r.io/team/a:1", "config"),
        ("r.io/team/b:1", "config"),
    ]


def test_targets_of_sources_in_order_the_first_to_name_a_key_wins() -> None:
    other = Listed(
        "compose",
        "database: sqlite:///u.db\nwatch:\n  - image: r.io/team/b:1\n  - image: r.io/team/c:1\n",
    )
    sources: list[WatchSource] = [ConfigSource(CONFIG), other]  # type: ignore[list-item]
    targets = targets_of(sources)
    assert [(k, w.source) for k, w in targets.items()] == [
        ("r.io/team/a:1", "config"),
        ("r.io/team/b:1", "config"),
        ("r.io/team/c:1", "compose"),
    ]


def test_a_reload_keeps_the_watches_and_references_that_did_not_change() -> None:
    # What stands is kept: a reload then leaves nothing new among its short-lived objects.
    before = targets_of([ConfigSource(CONFIG)])
    reloaded = parse_config(
        "database: sqlite:///unused.db\nwatch:\n"
        "  - image: r.io/team/a:1\n  - image: r.io/team/b:1\n    interval: 1m\n"
        "  - image: r.io/team/c:1\n"
    )
    a, b, c = ConfigSource(reloaded, before).targets()
    assert a is before["r.io/team/a:1"]  # unchanged: the watch in force
    assert b != before["r.io/team/b:1"] and b.interval == 60.0  # changed: the new settings
    assert b.image is before["r.io/team/b:1"].image  # on the reference in force
    assert b.key is before["r.io/team/b:1"].key
    assert c.key == "r.io/team/c:1" and c.source == "config"  # new
    assert [w.key for w in ConfigSource(reloaded).targets()] == [a.key, b.key, c.key]


class Follower:
    epoch = 3

    def is_leader(self) -> bool:
        return False


def test_single_process_always_leads_and_a_follower_writes_nothing() -> None:
    single: Coordinator = SingleProcess()
    assert (single.is_leader(), single.epoch) == (True, 0)
    written: list[list[Record]] = []

    def write(batch: list[Record]) -> Recorded:
        written.append(list(batch))
        return Recorded()

    watch = resolve_watches(CONFIG)[0]
    evaluation = Evaluation(TagState(watch.key, status=Status.PRESENT))

    async def main() -> int:
        recorder = Recorder(
            write,  # type: ignore[arg-type]
            prepare=lambda e, _w: Record(e),
            coordinator=Follower(),
        )
        recorder.add(evaluation, watch, version=1)
        await recorder.flush()
        return recorder.pending

    assert asyncio.run(main()) == 1  # kept, not written, until this process leads
    assert written == []
