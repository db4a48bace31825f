"""The watch-source seam: where the service's targets (watches) come from.

A source has a name and yields its targets; each target (``Watch``) carries
the name of the source that produced it (``Watch.source``), and the store
syncs the watches of each source on its own (``sync_watches(…, source=)``),
so one source's reload never deactivates another's watches. The config
file's ``watch:`` tags are the first source, each ``repository:`` entry one
more (``monitor.sources.repository``), then the deployment files of each
``sources:`` entry (``monitor.sources.deployment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from monitor.config import Config, Watch

__all__ = ["CONFIG_SOURCE", "ConfigSource", "WatchSource", "sources_for", "targets_of"]

CONFIG_SOURCE: Final = "config"


class WatchSource(Protocol):
    """One origin of watches."""

    @property
    def name(self) -> str:
        """Stable and unique among the sources: stored with each of its watches."""
        ...

    def targets(self) -> Sequence[Watch]:
        """Its watches, each with ``source == name``, in its own order."""
        ...


class ConfigSource:
    """The ``watch:`` entries of the config file, with ``defaults`` applied."""

    name: Final = CONFIG_SOURCE

    def __init__(self, config: Config) -> None:
        from monitor.config.resolve import resolve_watches

        # Resolved once: the service then drops the config's watch entries (memory).
        self._targets = tuple(
            watch if watch.source == self.name else replace(watch, source=self.name)
            for watch in resolve_watches(config)
        )

    def targets(self) -> Sequence[Watch]:
        return list(self._targets)


def sources_for(config: Config) -> list[WatchSource]:
    """The sources a config names: the config file's tags, each repository watch, then
    each ``sources:`` entry, unread (``monitor.sources.deployment.read_sources``)."""
    from monitor.config.resolve import resolve_repositories
    from monitor.sources.deployment import file_sources
    from monitor.sources.repository import RepositorySource

    return [
        ConfigSource(config),
        *(RepositorySource(rw) for rw in resolve_repositories(config)),
        *file_sources(config),
    ]


def targets_of(sources: Sequence[WatchSource]) -> dict[str, Watch]:
    """Every source's targets by key, in source order; the first source to name a key wins."""
    targets: dict[str, Watch] = {}
    for source in sources:
        for watch in source.targets():
            targets.setdefault(watch.key, watch)
    return targets
