"""The check runner: one check of a watch at a time, within its registry's gate.

``check(key)`` runs one check now (``POST …/check``); ``scheduled(key)`` is the
scheduler's job, which keeps the checks waiting for a registry slot and those
holding one apart so that ``drain()`` at stop can drop the first at once and
give the second a grace period. Each result is evaluated on the state cache
and handed to the recorder; when the store refuses a batch written on a stale
state, ``reevaluate`` evaluates its results again on the stored one.

The registry client is replaced on a reload that changes registry settings
(``swap_client``); the old one is closed once the checks then in flight are
done. The registry slots stay the same across reloads: one gate per registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from monitor.checker import RegistrySlots, check_reference, client_from_config
from monitor.domain import Reason, Status
from monitor.errors import RegistryError
from monitor.logs import CheckLog
from monitor.reference import canonical_registry
from monitor.runtime.failure import reason

if TYPE_CHECKING:
    from datetime import datetime

    from monitor.config import Config, RepositoryWatch, Watch
    from monitor.domain import CheckResult
    from monitor.metrics import Metrics
    from monitor.records import Evaluation, TagState
    from monitor.registry.client import RegistryClient, TagListing
    from monitor.registry.transport import TransportFactory
    from monitor.runtime.cache import StateCache
    from monitor.runtime.leader import Coordinator
    from monitor.runtime.recorder import Pending, Recorder

__all__ = ["CheckRunner"]

log = logging.getLogger("regmon")


class _KeyLock:
    """One key's checks one at a time; ``users`` hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class CheckRunner:
    """Runs the checks of the configured watches; ``start`` gives it where results go."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        watches: Callable[[], Mapping[str, Watch]],
        coordinator: Coordinator,
        transport_factory: TransportFactory | None = None,
    ) -> None:
        self._config = config
        self._watches = watches
        self._coordinator = coordinator
        self._transport_factory = transport_factory
        self._slots = RegistrySlots()
        self._locks: dict[str, _KeyLock] = {}
        self._inflight: set[asyncio.Task[Any]] = set()  # scheduled checks holding a slot
        # Scheduled checks waiting for a slot, in the order they began to wait: drain()
        # cancels them in that order, so each leaves the semaphore's FIFO of waiters
        # from its front (in any other order, 100,000 of them take a minute).
        self._queued: dict[asyncio.Task[Any], None] = {}
        self._stopping = asyncio.Event()
        self._client: RegistryClient | None = None
        self._retired: list[RegistryClient] = []
        self._retiring: list[asyncio.Task[None]] = []
        self._cache: StateCache | None = None
        self._recorder: Recorder | None = None
        self._metrics: Metrics | None = None
        self._check_log = CheckLog()

    @property
    def inflight(self) -> int:
        """Scheduled checks holding a registry slot now."""
        return len(self._inflight)

    def start(self, *, cache: StateCache, recorder: Recorder, metrics: Metrics) -> None:
        """Begin checking: results are evaluated on ``cache`` and go to ``recorder``."""
        self._cache = cache
        self._recorder = recorder
        self._metrics = metrics
        self._client = self.make_client(self._config())

    def make_client(self, config: Config) -> RegistryClient:
        return client_from_config(
            config,
            observer=self._on_request,
            transport_factory=self._transport_factory,
            slots=self._slots,  # one gate per registry, the same across reloads
        )

    def swap_client(self, client: RegistryClient) -> None:
        """Check with ``client`` from now on; the old one closes when its checks are done."""
        old, self._client = self._client, client
        if old is None:
            return

        async def close_later(inflight: set[asyncio.Task[Any]]) -> None:
            if inflight:
                await asyncio.wait(inflight)
            await old.aclose()

        self._retired.append(old)  # closed by aclose() if still open then
        task = asyncio.create_task(close_later(set(self._inflight)), name="regmon-retire")
        self._retiring.append(task)

    def _on_request(self, registry: str, method: str, code: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_request(canonical_registry(registry), method, code)

    async def scheduled(self, key: str) -> None:
        """The scheduler's job for ``key``: nothing once stopping or not the leader."""
        if self._stopping.is_set() or not self._coordinator.is_leader():
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - APScheduler runs jobs as tasks
            return
        self._queued[task] = None

        def started() -> None:
            self._queued.pop(task, None)
            self._inflight.add(task)

        try:
            await self.check(key, on_started=started)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            # Cancelled by drain(): one summary line there, not a traceback per job here.
        except Exception:
            log.exception("check of %s failed unexpectedly", key)
        finally:
            self._queued.pop(task, None)
            self._inflight.discard(task)

    async def check(
        self, key: str, on_started: Callable[[], None] | None = None, *, created: bool = False
    ) -> None:
        """Check ``key`` now (one at a time per watch) and evaluate the result.

        ``created``: the tag is new in its repository's listing (``tag.created``).
        A ``newer: semver`` watch that is present lists its repository too.
        """
        watch = self._watches().get(key)
        if watch is None or self._client is None:
            return
        # A lock per key only while a check of it runs or waits (kept, one per watch
        # was ~120 B each for the life of the process).
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = _KeyLock()
        held.users += 1
        try:
            async with held.lock:
                await self._check_locked(self._client, key, watch, created, on_started)
        finally:
            held.users -= 1
            if not held.users:
                del self._locks[key]

    async def _check_locked(
        self,
        client: RegistryClient,
        key: str,
        watch: Watch,
        created: bool,
        on_started: Callable[[], None] | None,
    ) -> None:
        settings = self._config().registry_settings(watch.image.host_key)
        newer: list[str] | None = None
        async with self._slots.get(watch.image, settings.max_concurrency):
            if on_started is not None:
                on_started()
            result = await check_reference(
                client, watch.image, platforms=watch.platforms, budget=settings.timeout
            )
            if watch.newer and result.status is Status.PRESENT:
                newer = await self._newer_versions(client, watch, settings.timeout)
        registry = canonical_registry(watch.image.api_host)
        if self._metrics is not None:
            self._metrics.observe_check(result, registry)
        previous = self._cache.get(key) if self._cache is not None else None
        evaluation = self._evaluate(watch, result, created=created, newer=newer)
        self._check_log.record(key, previous, result, evaluation, failing_after=watch.failing_after)

    def _evaluate(
        self,
        watch: Watch,
        result: CheckResult,
        *,
        created: bool = False,
        newer: Sequence[str] | None = None,
    ) -> Evaluation:
        """Fold ``result`` into the cached state and hand the evaluation to the recorder."""
        if self._cache is None:  # pragma: no cover - start() gives a cache before any check
            raise RuntimeError("check runner not started")
        previous = self._cache.get(watch.key)
        evaluation, version = self._cache.evaluate(watch, result, created=created, newer=newer)
        if self._recorder is not None:
            self._recorder.add(evaluation, watch, version=version, result=result, previous=previous)
        return evaluation

    # -- repositories (monitor.runtime.listings) ---------------------------------------

    async def _newer_versions(
        self, client: RegistryClient, watch: Watch, budget: float
    ) -> list[str] | None:
        """``newer: semver``: the higher versions its repository lists; None when undecided."""
        from monitor.tags import newer_versions

        try:
            async with asyncio.timeout(budget):
                listing = await client.list_tags(watch.image)
        except (RegistryError, TimeoutError) as exc:
            log.warning("newer versions of %s: listing failed: %s", watch.key, reason(exc))
            return None
        if listing.status is not Status.PRESENT or watch.image.tag is None:
            return None
        return newer_versions(watch.image.tag, listing.tags)

    async def list_tags(self, repository: RepositoryWatch) -> TagListing:
        """One complete listing of ``repository`` within its registry's gate; RegistryError
        when undecided."""
        if self._client is None:
            raise RegistryError(Reason.PROTOCOL, "the check runner is not started")
        ref = repository.repository.tagged("latest")  # any tag: the listing names none
        settings = self._config().registry_settings(ref.host_key)
        async with self._slots.get(ref, settings.max_concurrency):
            try:
                # Ten times a check's budget: a listing is one request per page.
                async with asyncio.timeout(settings.timeout * 10):
                    return await self._client.list_tags(ref)
            except TimeoutError:
                raise RegistryError(Reason.TIMEOUT, f"{ref.name}: tags/list timed out") from None

    def record_deleted(self, watches: Sequence[Watch], at: datetime) -> None:
        """``tag.deleted`` for tags their repository no longer lists, with their state."""
        if self._cache is None:  # pragma: no cover - listings start after start()
            return
        for watch in watches:
            evaluation, version = self._cache.delete(watch.key, at)
            if self._recorder is not None:
                self._recorder.add(evaluation, watch, version=version)
            log.info("tag.deleted %s: no longer listed by its repository", watch.key)

    async def check_new(self, created: Sequence[str], others: Sequence[str]) -> None:
        """Check tags that joined a repository's selection now: a present one of those new
        in the repository (``created``) is its ``tag.created``."""
        await asyncio.gather(
            *(self.check(key, created=True) for key in created),
            *(self.check(key) for key in others),
        )

    def reevaluate(
        self, stale: Sequence[Pending], current: Mapping[str, tuple[TagState, int]]
    ) -> None:
        """The store refused results evaluated on a stale state: refresh the cache from the
        store's state, then evaluate them again, in order, on top of it."""
        if self._cache is None:  # pragma: no cover - the recorder starts after start()
            return
        refreshed: set[str] = set()
        watches = self._watches()
        for pending in stale:
            key = pending.evaluation.state.image
            if key not in refreshed:
                refreshed.add(key)
                self._cache.refresh(key, current.get(key))
            if pending.result is not None and key in watches:
                self._evaluate(pending.watch, pending.result)

    async def drain(self, grace: float, *, dropped: int = 0) -> None:
        """Stop: no new checks; queued ones are dropped at once, those in flight get
        ``grace`` seconds before they are cancelled. ``dropped``: due checks the
        scheduler held back and dropped (counted in the log line)."""
        self._stopping.set()
        queued = [task for task in self._queued if not task.done()]
        log.info(
            "regmon stopping: draining %d in-flight checks, dropping %d queued",
            len(self._inflight),
            len(queued) + dropped,
        )
        for task in queued:
            task.cancel()  # scheduled() ends quietly: nothing was sent yet
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=grace)
            if late:
                log.warning(
                    "regmon stopping: %d checks still running after %.0fs were cancelled",
                    len(late),
                    grace,
                )
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=1.0)
        if queued:
            await asyncio.wait(queued, timeout=1.0)

    async def aclose(self) -> None:
        """Close the registry client and every replaced one still open."""
        for task in self._retiring:
            task.cancel()
        for task in self._retiring:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # keep closing: the clients below must still be closed
                log.exception("task %s failed", task.get_name())
        for client in [self._client, *self._retired]:
            if client is not None:
                await client.aclose()  # idempotent
