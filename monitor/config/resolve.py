"""From a validated config to the values other modules use.

A watch gets every default applied (``resolve_watches``: the caller's step, so
the schema does not depend on this module), and a database path of an older
layout is pointed out. Pure: nothing here reads files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote

from monitor.config.paths import SQLITE_URL
from monitor.reference import ImageReference, RepositoryName
from monitor.tags import TagSelection

if TYPE_CHECKING:
    from monitor.config.schema import Config, SourceConfig, WatchConfig, _WatchSettings

__all__ = [
    "RepositoryWatch",
    "Watch",
    "resolve_repositories",
    "resolve_source_watch",
    "resolve_watches",
    "warn_if_database_moved",
]

# --------------------------------------------------------------------------- paths


def warn_if_database_moved(config: Config, folder: str) -> None:
    """Relative SQLite paths once followed the working directory: say where the
    database of an older layout is, rather than silently starting an empty one."""
    match = SQLITE_URL.match(config.database)
    if match is None or not match.group(2).startswith("/"):
        return
    database = unquote(match.group(2))
    relative = os.path.relpath(database, folder)
    cwd = os.getcwd()
    if relative.startswith("..") or cwd == folder or os.path.exists(database):
        return
    before = os.path.join(cwd, relative)
    if os.path.isfile(before):
        logging.getLogger("monitor.config").warning(
            "%s: database %s does not exist, but %s does: relative paths now resolve "
            "against the config file's folder; move the database, or write "
            "database: sqlite:///%s",
            config.source,
            database,
            before,
            before,
        )


# --------------------------------------------------------------------------- watches


@dataclass(frozen=True, slots=True)
class Watch:
    """A watch with every default applied: what the scheduler and checker use.

    Exactly one of ``interval`` (seconds) and ``cron`` (5 fields, day of week
    written as names so APScheduler 3 reads it as cron does) is set.
    ``webhooks`` names the receivers of this watch's events.
    """

    image: ImageReference
    key: str
    interval: float | None
    cron: str | None
    jitter: float
    platforms: tuple[str, ...]
    webhooks: tuple[str, ...]
    missing_after: int
    failing_after: int
    # The watch source that produced it (``monitor.sources.base``); "config": the file.
    source: str = "config"
    # ``newer: semver``: look for higher versions of the tag in its repository (SPEC §9).
    newer: bool = False
    # Where a deployment file uses the image (``file:line``, relative to the config's
    # folder when inside it); empty for a ``watch:`` entry.
    places: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryWatch:
    """A ``repository:`` entry with every default applied: listed on its schedule, each
    selected tag watched as a ``Watch`` with the same settings (``tag_watch``)."""

    repository: RepositoryName
    key: str
    selection: TagSelection
    interval: float | None
    cron: str | None
    jitter: float
    platforms: tuple[str, ...]
    webhooks: tuple[str, ...]
    missing_after: int
    failing_after: int

    def tag_watch(self, tag: str, source: str) -> Watch:
        image = self.repository.tagged(tag)
        return Watch(
            image=image,
            key=str(image),
            interval=self.interval,
            cron=self.cron,
            jitter=self.jitter,
            platforms=self.platforms,
            webhooks=self.webhooks,
            missing_after=self.missing_after,
            failing_after=self.failing_after,
            source=source,
        )


def resolve_watches(config: Config) -> tuple[Watch, ...]:
    """Every tag watch (``image:``) of ``config`` with ``defaults`` applied, in file order."""
    every_webhook = tuple(webhook.name for webhook in config.webhooks)
    return tuple(
        _resolve(config, watch, every_webhook) for watch in config.watch if watch.image is not None
    )


def resolve_repositories(config: Config) -> tuple[RepositoryWatch, ...]:
    """Every repository watch of ``config`` with ``defaults`` applied, in file order."""
    every_webhook = tuple(webhook.name for webhook in config.webhooks)
    resolved = []
    for entry in config.watch:
        if entry.repository is None:
            continue
        base = _resolve(config, entry, every_webhook)
        tags = entry.tags
        resolved.append(
            RepositoryWatch(
                repository=entry.repository,
                key=str(entry.repository),
                selection=TagSelection()
                if tags is None
                else TagSelection(tags.include, tags.exclude, tags.semver, tags.max),
                interval=base.interval,
                cron=base.cron,
                jitter=base.jitter,
                platforms=base.platforms,
                webhooks=base.webhooks,
                missing_after=base.missing_after,
                failing_after=base.failing_after,
            )
        )
    return tuple(resolved)


def resolve_source_watch(
    config: Config, entry: SourceConfig, image: ImageReference, places: tuple[str, ...]
) -> Watch:
    """An image found by the ``sources:`` entry ``entry``, with its keys as the defaults,
    then ``defaults``."""
    every_webhook = tuple(webhook.name for webhook in config.webhooks)
    watch = _with_defaults(config, entry, image, every_webhook)
    return replace(watch, source=entry.name, places=places)


def _resolve(config: Config, watch: WatchConfig, every_webhook: tuple[str, ...]) -> Watch:
    # A repository entry borrows a placeholder tag: only its settings are used.
    image = watch.image if watch.image is not None else _placeholder(watch.repository)
    return _with_defaults(config, watch, image, every_webhook, newer=watch.newer == "semver")


def _with_defaults(
    config: Config,
    watch: _WatchSettings,
    image: ImageReference,
    every_webhook: tuple[str, ...],
    *,
    newer: bool = False,
) -> Watch:
    defaults = config.defaults
    if watch.cron is not None or watch.interval is not None:
        interval, cron = watch.interval, watch.cron
    elif defaults.cron is not None:
        interval, cron = None, defaults.cron
    else:
        interval, cron = defaults.interval, None
    webhooks = every_webhook if watch.webhooks is None else tuple(dict.fromkeys(watch.webhooks))
    return Watch(
        image=image,
        key=str(image),
        interval=interval,
        cron=cron,
        jitter=defaults.jitter if watch.jitter is None else watch.jitter,
        platforms=watch.platforms,
        webhooks=webhooks,
        missing_after=watch.missing_after or defaults.missing_after,
        failing_after=watch.failing_after or defaults.failing_after,
        newer=newer,
    )


def _placeholder(repository: RepositoryName | None) -> ImageReference:
    if repository is None:  # pragma: no cover - the schema requires image or repository
        raise ValueError("a watch needs an image or a repository")
    return repository.tagged("latest")
