"""The configured watches to the store, each source's on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Watch
    from monitor.sources.base import WatchSource

__all__ = ["seed_sources", "sync_watches"]


@dataclass(frozen=True, slots=True)
class _WatchRow:
    """A configured watch as the store's ``sync_watches`` records it."""

    image: str
    registry: str
    repository: str
    tag: str
    interval_seconds: float | None
    cron: str | None


def _watch_rows(watches: Sequence[Watch]) -> list[_WatchRow]:
    return [
        _WatchRow(
            w.key,
            w.image.registry,
            w.image.repository,
            w.image.tag or w.image.digest or "",
            w.interval,
            w.cron,
        )
        for w in watches
    ]


async def sync_watches(
    engine: Engine, by_source: Mapping[str, Sequence[Watch]], *, exclusive: bool = False
) -> None:
    """Each source's watches to the store, on its own: one source never retires another's
    (a source named with no watches has its watches retired; ``exclusive``: these are
    all the sources, the watches of any other retire too)."""
    from monitor.store.repository import sync_sources
    from monitor.threads import in_thread

    rows = {name: _watch_rows(watches) for name, watches in by_source.items()}
    # A reload the file watcher started may be cancelled by stop() in the middle.
    await in_thread(sync_sources, engine, rows, datetime.now(UTC), exclusive=exclusive)


async def seed_sources(engine: Engine, sources: Sequence[WatchSource]) -> None:
    """Dynamic sources start from the watches the store holds for them (a restart)."""
    from monitor.runtime.targets import DynamicSource
    from monitor.store.repository import active_watches

    dynamic = [source for source in sources if isinstance(source, DynamicSource)]
    if not dynamic:
        return
    from monitor.threads import in_thread

    rows = await in_thread(active_watches, engine)
    for source in dynamic:
        source.seed([row.image for row in rows if row.source == source.name])
