"""The watch-source seam: where the service's targets (watches) come from.

A source has a name and yields its targets; each target (``Watch``) carries
the name of the source that produced it (``Watch.source``), and the store
syncs the watches of each source on its own (``sync_watches(…, source=)``),
so one source's reload never deactivates another's watches. The config
file's ``watch:`` tags are the first source, each ``repository:`` entry one
more (``monitor.sources.repository``), then the deployment files of each
``sources:`` entry (``monitor.sources.deployment``); ``monitor.sources.all``
knows them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from monitor.config import Config, Watch

__all__ = ["CONFIG_SOURCE", "ConfigSource", "WatchSource", "targets_of"]

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

    def __init__(self, config: Config, known: Mapping[str, Watch] | None = None) -> None:
        from monitor.config.resolve import resolve_watches

        # Resolved once: the service then drops the config's watch entries (memory).
        resolved = (
            watch if watch.source == self.name else replace(watch, source=self.name)
            for watch in resolve_watches(config)
        )
        self._targets = tuple(resolved if not known else (_kept(w, known) for w in resolved))

    def targets(self) -> Sequence[Watch]:
        return list(self._targets)


def _kept(watch: Watch, known: Mapping[str, Watch]) -> Watch:
    """``watch``, or what already stands for it: the watch in force when equal, else
    ``watch`` on the reference in force when that is equal.

    A reload builds every watch again while the old ones still stand; what it keeps of
    the new ones lands among the load's short-lived objects (YAML, pydantic models) and
    holds their memory once they are gone. Kept objects leave nothing new behind.
    """
    old = known.get(watch.key)
    if old is None:
        return watch
    if old == watch:
        return old
    if old.image == watch.image and old.image is not watch.image:
        return replace(watch, image=old.image, key=old.key)
    return watch


def targets_of(sources: Sequence[WatchSource]) -> dict[str, Watch]:
    """Every source's targets by key, in source order; the first source to name a key wins."""
    targets: dict[str, Watch] = {}
    for source in sources:
        for watch in source.targets():
            targets.setdefault(watch.key, watch)
    return targets
