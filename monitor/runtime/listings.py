"""Repository watches at run time: one listing per repository per interval (SPEC §9).

Each repository watch has a job of its own (a scheduler beside the tag
watches' one, keyed by the repository). A complete listing moves the
repository's source on (``RepositorySource.apply``) and hands its new target
set to ``Targets.update``; then each tag that left the listing is recorded as
``tag.deleted`` and each tag new to it is checked at once, its first present
check being its ``tag.created`` (``monitor.events.evaluate(created=True)``),
so both events are written with the tag's state, once.

A listing that fails (``error``) changes nothing: a partial or failed listing
never reads as "these tags were deleted". A repository that is ``missing`` or
``denied`` keeps its selection too: its tags' own checks then find them
missing, as for any tag watch. What the last listing found is kept for the
API, the status page and the metrics (``states``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.domain import Reason, Status
from monitor.errors import RegistryError
from monitor.records import RepositoryState
from monitor.sources.repository import RepositorySource, source_name

if TYPE_CHECKING:
    from monitor.config import RepositoryWatch, Watch
    from monitor.registry.client import TagListing
    from monitor.runtime.targets import Targets
    from monitor.scheduler import SchedulePlan, WatchScheduler

__all__ = ["ListingState", "Listings"]

log = logging.getLogger("regmon")


@dataclass(frozen=True, slots=True)
class ListingState:
    """What the last listing of one repository found (``status`` None: not listed yet)."""

    status: Status | None = None
    reason: Reason | None = None
    detail: str | None = None
    listed_at: datetime | None = None
    listed: int = 0  # tags in the last complete listing, artifacts included
    pages: int = 0
    duration_ms: float = 0.0


class Listings:
    """The repository watches' listing jobs and what their last listings found.

    ``list_tags`` lists one repository (within its registry's slots and
    budget; raises ``RegistryError`` when undecided); ``record_deleted`` writes
    ``tag.deleted`` for the given tag watches; ``check_new(created, others)``
    checks tags that joined the selection at once, the new ones with
    ``created=True``; ``may_run`` is false on a follower.
    """

    def __init__(
        self,
        *,
        list_tags: Callable[[RepositoryWatch], Awaitable[TagListing]],
        record_deleted: Callable[[Sequence[Watch], datetime], None],
        check_new: Callable[[Sequence[str], Sequence[str]], Awaitable[None]],
        may_run: Callable[[], bool],
    ) -> None:
        from monitor.scheduler import WatchScheduler

        self._targets: Targets | None = None
        self._list_tags = list_tags
        self._record_deleted = record_deleted
        self._check_new = check_new
        self._may_run = may_run
        self._scheduler: WatchScheduler = WatchScheduler(self._scheduled)
        self._states: dict[str, ListingState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def use(self, targets: Targets) -> None:
        """The service's targets, once the store has them (listings start after)."""
        self._targets = targets

    # -- schedule ------------------------------------------------------------------------

    def plan(self, repositories: Sequence[RepositoryWatch]) -> SchedulePlan:
        """The listing jobs ``repositories`` need; ``ConfigError`` if one cannot be held."""
        return self._scheduler.plan(repositories)

    def commit(self, plan: SchedulePlan) -> None:
        self._scheduler.commit(plan)
        kept = {watch.key for watch, _, _ in plan.changes} | set(self._scheduler.keys())
        self._states = {key: state for key, state in self._states.items() if key in kept}

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self, grace: float) -> None:
        """No more listings; one in flight gets ``grace`` seconds, then is cancelled."""
        self._stopping = True
        self._scheduler.shutdown()
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)

    # -- state ---------------------------------------------------------------------------

    def states(self) -> Mapping[str, ListingState]:
        """The last listing of each repository watch, by its key."""
        return dict(self._states)

    def shown(self) -> list[RepositoryState]:
        """Each repository watch with the tags it has now and its last listing (API, status)."""
        if self._targets is None:
            return []
        shown = []
        for source in self._targets.sources():
            if isinstance(source, RepositorySource):
                last = self._states.get(source.watch.key) or ListingState()
                shown.append(
                    RepositoryState(
                        key=source.watch.key,
                        tags=tuple(w.key for w in source.targets()),
                        status=last.status,
                        reason=last.reason,
                        detail=last.detail,
                        listed_at=last.listed_at,
                        listed=last.listed,
                    )
                )
        return shown

    # -- listing -------------------------------------------------------------------------

    async def _scheduled(self, key: str) -> None:
        if not self._may_run():
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.list_now(key)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by stop(): nothing was changed, the next start lists again.
        except Exception:
            log.exception("listing of %s failed unexpectedly", key)
        finally:
            if task is not None:
                self._running.discard(task)

    async def list_now(self, key: str) -> ListingState | None:
        """List repository ``key`` now and apply what came and went; None if not watched."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            targets = self._targets
            source = targets.source(source_name(key)) if targets is not None else None
            if targets is None or not isinstance(source, RepositorySource):
                return None
            state = await self._list(targets, source)
            self._states[key] = state
            return state

    async def _list(self, targets: Targets, source: RepositorySource) -> ListingState:
        watch = source.watch
        began = time.monotonic()
        at = datetime.now(UTC)
        try:
            listing = await self._list_tags(watch)
        except RegistryError as exc:
            log.warning(
                "listing %s failed: %s: %s; its tags stay as they were", watch.key, exc.reason, exc
            )
            return ListingState(Status.ERROR, exc.reason, str(exc), at, duration_ms=_ms(began))
        if listing.status is not Status.PRESENT:
            log.warning(
                "listing %s: %s %s; its tags stay watched (their checks tell)",
                watch.key,
                listing.status,
                listing.detail or "",
            )
            return ListingState(
                listing.status,
                None,
                listing.detail,
                at,
                pages=listing.pages,
                duration_ms=_ms(began),
            )
        before = source.snapshot()
        baseline = not source.listed
        change = source.apply(listing.tags)
        added: tuple[str, ...] = ()
        # An unchanged selection writes nothing: a steady cycle is the listing alone.
        if baseline or change.selected != before[0]:
            try:
                # The baseline's tags get their first checks from the scheduler; tags
                # that come later are checked below, at once.
                update = await targets.update(source, first_run_now=baseline)
            except BaseException:
                source.restore(before)  # the next listing finds the same changes again
                raise
            if update is None:
                return ListingState(
                    Status.PRESENT, None, None, at, len(listing.tags), listing.pages, _ms(began)
                )
            added = () if baseline else update.added
        if change.deleted:
            self._record_deleted([watch.tag_watch(tag, source.name) for tag in change.deleted], at)
        if change.created or change.deleted or change.dropped:
            log.info(
                "listing %s: %d tags selected (%d new, %d deleted, %d no longer selected)",
                watch.key,
                len(change.selected),
                len(change.created),
                len(change.deleted),
                len(change.dropped),
            )
        if added:
            created = {str(watch.repository.tagged(tag)) for tag in change.created}
            await self._check_new(
                [key for key in added if key in created],
                [key for key in added if key not in created],  # back in the selection
            )
        return ListingState(
            Status.PRESENT, None, None, at, len(listing.tags), listing.pages, _ms(began)
        )


def _ms(began: float) -> float:
    return (time.monotonic() - began) * 1000.0
