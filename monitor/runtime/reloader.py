"""The config reloader: SIGHUP and file polling ask, one reload runs at a time, all or nothing.

A reload builds everything first (the new config, its sources' watches, its
scheduler triggers, a registry client when the registry settings changed), then
writes the watches to the store; only when all of that worked is the new config
committed to the service and the scheduler, so a refused reload leaves all of
them as they were. The files of the ``sources:`` entries are watched the same
way, each source on its own (``follow``), through ``Targets.update``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from monitor.config import Config, Watch, load_config, resolve_repositories
from monitor.errors import RegmonError
from monitor.runtime.failure import reason
from monitor.sources.base import targets_of
from monitor.sources.deployment import FileSource, read_sources

if TYPE_CHECKING:
    from monitor.registry.client import RegistryClient
    from monitor.runtime.listings import Listings
    from monitor.runtime.targets import Targets
    from monitor.scheduler import WatchScheduler

__all__ = ["CONFIG_POLL", "Reloader"]

log = logging.getLogger("regmon")

CONFIG_POLL: Final = 1.0  # seconds between looks at the config file's mtime


class Reloader:
    """Re-reads ``path`` on request (``reload_soon``, SIGHUP) or when its mtime changes.

    ``sync_watches`` writes the new watches to the store, per source (a failure
    refuses the reload); ``commit`` swaps the new config, its watches and, when
    the registry settings changed, a new registry client into the service.
    ``targets`` builds the new sources (dynamic ones keep their run-time targets)
    and puts them in force; its lock keeps a source's update out of a reload.
    """

    def __init__(
        self,
        path: str,
        *,
        current: Callable[[], Config],
        scheduler: WatchScheduler,
        make_client: Callable[[Config], RegistryClient],
        sync_watches: Callable[[Mapping[str, Sequence[Watch]]], Awaitable[None]],
        commit: Callable[[Config, Mapping[str, Watch], RegistryClient | None], None],
        targets: Targets,
        listings: Listings | None = None,
        poll: float = CONFIG_POLL,
    ) -> None:
        self._path = path
        self._current = current
        self._scheduler = scheduler
        self._make_client = make_client
        self._sync_watches = sync_watches
        self._commit = commit
        self._targets = targets
        self._listings = listings
        self._poll = poll
        self._lock = asyncio.Lock()
        self._requests: set[asyncio.Task[Any]] = set()
        self._mtime = _mtime(path)

    def reload_soon(self) -> None:
        """Reload in a task of its own (a signal handler cannot wait)."""
        task = asyncio.create_task(self.reload(), name="regmon-reload")
        self._requests.add(task)  # keep a reference until it is done
        task.add_done_callback(self._requests.discard)

    async def watch_file(self) -> None:
        """Reload whenever the file's mtime changes, follow the sources' files whenever
        they change (re-globbed, so new files are found); runs until cancelled."""
        while True:
            await asyncio.sleep(self._poll)
            mtime = _mtime(self._path)
            if mtime is not None and mtime != self._mtime:
                self._mtime = mtime
                await self.reload()
            for source in self._targets.sources():
                if isinstance(source, FileSource):
                    await self.follow(source)

    async def follow(self, source: FileSource) -> bool:
        """Re-read ``source``'s files if they changed since it last looked; True when its
        new targets are in force. A file that no longer parses is logged once per change
        and the source keeps its last good targets."""
        try:
            fingerprint = await asyncio.to_thread(source.fingerprint)
            if not source.stale(fingerprint):
                return False
            try:
                fresh = await asyncio.to_thread(source.reread)
            except RegmonError as exc:
                log.error("%s; keeping its last good watches", exc)
                return False
            if fresh is None:
                return False
            change = await self._targets.update(fresh, replacing=source)
        except Exception as exc:
            source.unsee()  # the store or the scheduler refused: the next look tries again
            log.error(
                "source %s: its files changed but the watches did not: %s", source.name, reason(exc)
            )
            return False
        if change is None:
            return False  # a config reload replaced the source meanwhile and read it anew
        log.info(
            "source %s reloaded: %d watches (%d added, %d removed)",
            fresh.name,
            len(fresh.targets()),
            len(change.added),
            len(change.removed),
        )
        return True

    async def reload(self) -> bool:
        """Re-read the config file; a broken one is refused and the old one stays.

        One reload at a time (SIGHUP and the file watcher may both ask).
        """
        async with self._lock, self._targets.lock:
            try:
                return await self._reload()
            except Exception as exc:
                log.error("config reload failed, keeping the running config: %s", reason(exc))
                return False

    async def _reload(self) -> bool:
        current = self._current()
        try:
            new = await asyncio.to_thread(load_config, self._path)
        except RegmonError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return False
        if new.database != current.database or new.listen != current.listen:
            log.warning("config reload: database and listen changes need a restart")
        sources = self._targets.for_config(new)
        try:
            for problem in await asyncio.to_thread(read_sources, sources):
                log.error("%s; keeping its last good watches", problem)
        except RegmonError as exc:  # a new entry's files, with no good read to keep
            log.error("config reload refused, keeping the running config: %s", exc)
            return False
        watches = targets_of(sources)
        try:
            plan = self._scheduler.plan(list(watches.values()))
            listings = self._listings
            listing_plan = listings.plan(resolve_repositories(new)) if listings else None
        except RegmonError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return False
        client = None
        if (new.registries, new.docker_config) != (current.registries, current.docker_config):
            client = self._make_client(new)
        # The store next: if it fails, nothing in memory or in the scheduler has changed.
        try:
            await self._sync_watches(self._targets.rows_for(sources))
        except BaseException:
            if client is not None:
                await client.aclose()
            raise
        # Commit: nothing below waits, so no check sees half of the new config.
        self._targets.commit(sources)
        self._commit(new, watches, client)
        added, removed, rescheduled = self._scheduler.commit(plan)
        if self._listings is not None and listing_plan is not None:
            self._listings.commit(listing_plan)
        log.info(
            "config reloaded: %d watches (%d added, %d removed, %d rescheduled)",
            len(watches),
            added,
            removed,
            rescheduled,
        )
        return True


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
