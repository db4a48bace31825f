"""Every kind of watch source a config can name, in one place.

Apart from :mod:`monitor.sources.base` (the seam every source implements), so
that the seam imports no source of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from monitor.config import Config, Watch
    from monitor.sources.base import WatchSource

__all__ = ["sources_for"]


def sources_for(config: Config, known: Mapping[str, Watch] | None = None) -> list[WatchSource]:
    """The sources a config names: the config file's tags, each repository watch, then
    each ``sources:`` entry, unread (``monitor.sources.deployment.read_sources``).
    ``known``: the watches in force (a reload), kept where the config has them unchanged."""
    from monitor.config.resolve import resolve_repositories
    from monitor.sources.base import ConfigSource
    from monitor.sources.deployment import file_sources
    from monitor.sources.repository import RepositorySource

    return [
        ConfigSource(config, known),
        *(RepositorySource(rw) for rw in resolve_repositories(config)),
        *file_sources(config),
    ]
