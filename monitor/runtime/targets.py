"""What the service watches, by source, and the one place that changes it at run time.

A static source (the config's ``watch:`` list) changes only with the config. A
dynamic source (a repository's selected tags after each listing, the images
of deployment files) changes at run time and hands its new target set to
``Targets.update``: that source's watches are written to the store (a watch
that goes is deactivated, its history kept), its scheduler jobs are added and
removed, and the service's watch map follows; the targets and states of every
other source are left alone.

A reload builds the new config's sources with ``for_config``: a dynamic source
still configured takes the run-time targets of the one it replaces
(``DynamicSource.carry_over``), so a repository's tags survive a reload that
keeps the repository, and a source the new config no longer names has its
watches retired with it (``rows_for``). ``lock`` is held by updates and
reloads alike, so the two never interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from monitor.sources.all import sources_for
from monitor.sources.base import WatchSource, targets_of

if TYPE_CHECKING:
    from monitor.config import Config, Watch
    from monitor.scheduler import SchedulePlan, WatchScheduler

__all__ = ["DynamicSource", "TargetChange", "Targets", "by_source"]


@runtime_checkable
class DynamicSource(WatchSource, Protocol):
    """A source whose targets change while the service runs."""

    def carry_over(self, previous: WatchSource) -> None:
        """Take over the run-time targets of ``previous``, the source of the same name
        in the config before a reload."""
        ...

    def seed(self, stored: Sequence[str]) -> None:
        """Start from the watch keys the store holds for this source (after a restart)."""
        ...


def by_source(
    sources: Sequence[WatchSource], watches: Mapping[str, Watch], names: Collection[str]
) -> dict[str, list[Watch]]:
    """The watches of each source in ``names`` that it wins (``watches`` as ``targets_of``
    merges them), every named source present, with an empty list when it wins none.

    What the store holds per source: a key two sources name is stored under the winner
    only, so the other dropping it never retires the winner's watch.
    """
    grouped: dict[str, list[Watch]] = {s.name: [] for s in sources if s.name in names}
    for watch in watches.values():
        if watch.source in grouped:
            grouped[watch.source].append(watch)
    return grouped


@dataclass(frozen=True, slots=True)
class TargetChange:
    """What one ``update`` changed: watch keys added and removed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class Targets:
    """The sources in force and their merged targets (the first source to name a key wins).

    ``sync`` writes the watches of the named sources to the store (one
    transaction; an empty list retires a source's watches); ``on_change`` gets
    the new watch map after every change, once the store has it.
    """

    def __init__(
        self,
        sources: Sequence[WatchSource],
        *,
        scheduler: WatchScheduler,
        sync: Callable[[Mapping[str, Sequence[Watch]]], Awaitable[None]],
        on_change: Callable[[Mapping[str, Watch]], None],
    ) -> None:
        self._sources: dict[str, WatchSource] = {source.name: source for source in sources}
        self._watches: dict[str, Watch] = targets_of(sources)
        self._scheduler = scheduler
        self._sync = sync
        self._on_change = on_change
        self.lock = asyncio.Lock()

    @property
    def watches(self) -> Mapping[str, Watch]:
        return self._watches

    def sources(self) -> list[WatchSource]:
        return list(self._sources.values())

    def source(self, name: str) -> WatchSource | None:
        return self._sources.get(name)

    def for_config(self, config: Config) -> list[WatchSource]:
        """The sources of ``config``; dynamic ones carry the current ones' targets over,
        and the config's watches that did not change are the ones in force."""
        fresh = sources_for(config, self._watches)
        for source in fresh:
            old = self._sources.get(source.name)
            if old is not None and isinstance(source, DynamicSource):
                source.carry_over(old)
        return fresh

    def rows_for(self, sources: Sequence[WatchSource]) -> dict[str, Sequence[Watch]]:
        """What the store is to hold per source once ``sources`` are in force: their targets,
        and nothing for a source in force now that they no longer name."""
        rows: dict[str, Sequence[Watch]] = {name: [] for name in self._sources}
        rows.update(by_source(sources, targets_of(sources), {source.name for source in sources}))
        return rows

    def commit(self, sources: Sequence[WatchSource]) -> dict[str, Watch]:
        """Put ``sources`` in force (a reload, after the store has their watches)."""
        self._sources = {source.name: source for source in sources}
        self._watches = targets_of(sources)
        self._on_change(self._watches)
        return self._watches

    async def follow(self, stored: Mapping[str, Sequence[str]]) -> TargetChange:
        """A follower's dynamic sources as the leader stored them: each one seeded again
        from ``stored`` (its active watch keys, by source name), the scheduler and the
        watch map following. Nothing is written: the leader's listings wrote these."""
        async with self.lock:
            sources = list(self._sources.values())
            for source in sources:
                if isinstance(source, DynamicSource):
                    source.seed(stored.get(source.name, ()))
            watches = targets_of(sources)
            if watches.keys() == self._watches.keys():
                return TargetChange()
            plan = self._scheduler.plan(list(watches.values()))
            # Not checked at once: the leader checks them; a follower's jobs only wait
            # for the lead, when the store already holds their states.
            return self._put(watches, plan, first_run_now=False)

    async def update(
        self,
        source: WatchSource,
        *,
        first_run_now: bool = True,
        replacing: WatchSource | None = None,
    ) -> TargetChange | None:
        """``source`` has new targets: the store, the scheduler and the watch map follow.

        ``replacing``: the source in force that ``source`` takes the place of (a new
        read of deployment files), else ``source`` is the one in force, changed.
        None (and nothing changed) when that source is no longer in force: a reload
        replaced it meanwhile, and its successor carries the targets on. A schedule
        that cannot be held or a store that fails raises, with nothing changed.
        """
        async with self.lock:
            if self._sources.get(source.name) is not (replacing or source):
                return None
            sources = {**self._sources, source.name: source}
            watches = targets_of(list(sources.values()))
            plan = self._scheduler.plan(list(watches.values()))
            await self._sync(by_source(list(sources.values()), watches, {source.name}))
            self._sources = sources
            return self._put(watches, plan, first_run_now=first_run_now)

    def _put(
        self, watches: dict[str, Watch], plan: SchedulePlan, *, first_run_now: bool
    ) -> TargetChange:
        """Put ``watches`` in force, the scheduler (``plan``, made for them) and
        ``on_change`` following; what changed against the watches in force before."""
        before = self._watches
        self._watches = watches
        self._scheduler.commit(plan, first_run_now=first_run_now)
        self._on_change(watches)
        return TargetChange(
            added=tuple(key for key in watches if key not in before),
            removed=tuple(key for key in before if key not in watches),
        )
