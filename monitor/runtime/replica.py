"""This process's role among replicas: who leads, the fenced writer, taking the lead, following.

One process on its database (SQLite, or a coordinator given) always leads. On
PostgreSQL the replicas share the database and a lease
(:class:`monitor.runtime.lease.LeaseCoordinator`) decides: the leader writes through
a fenced engine, and counts as leading only once it has loaded the store's states of
its epoch (:class:`monitor.runtime.leader.LoadedLead`); a follower re-reads the states
now and then so its API shows what the leader wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from monitor.runtime.failure import reason
from monitor.runtime.leader import LoadedLead, SingleProcess

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Config, Watch
    from monitor.metrics import Metrics
    from monitor.records import RegistryState, TagState
    from monitor.runtime.cache import StateCache
    from monitor.runtime.deliveries import Deliveries
    from monitor.runtime.leader import Coordinator
    from monitor.runtime.lease import LeaseCoordinator
    from monitor.runtime.outages import Outages
    from monitor.runtime.recorder import Recorder
    from monitor.runtime.targets import Targets

__all__ = ["Replica"]

log = logging.getLogger("regmon")


class Replica:
    """The coordinator this process follows, and what it does when its role changes.

    Built with the service; ``open()`` chooses the coordinator once the database is
    known, ``attach()`` hands over the parts a change of role reloads once they exist.
    """

    def __init__(
        self,
        coordinator: Coordinator | None,
        *,
        config: Callable[[], Config],
        watches: Callable[[], Mapping[str, Watch]],
    ) -> None:
        self._coordinator: Coordinator = coordinator or SingleProcess()
        self._coordinator_given = coordinator is not None
        self._config = config
        self._watches = watches
        self.lead = LoadedLead(self._coordinator)
        self.lease: LeaseCoordinator | None = None  # PostgreSQL: replicas share the database
        self._engine: Engine | None = None
        self._cache: StateCache | None = None
        self._recorder: Recorder | None = None
        self._outages: Outages | None = None
        self._metrics: Metrics | None = None
        self._deliveries: Deliveries | None = None
        self._targets: Targets | None = None

    def lease_seconds(self) -> float | None:
        """The lease of replicas sharing a PostgreSQL database; None: this process is alone."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if self._coordinator_given:
            return None
        config = self._config()
        try:
            backend = make_url(config.database).get_backend_name()
        except ArgumentError:
            return None  # make_engine says what is wrong with it
        return config.ha.lease if backend == "postgresql" else None

    def engine_options(self, lease: float | None) -> dict[str, Any]:
        if lease is None:
            return {}
        from monitor.runtime.lease import session_options

        return session_options(lease)

    async def open(
        self, engine: Engine, lease: float | None, on_failure: contextlib.ExitStack
    ) -> Engine:
        """Take part in the lease (if any) and return the engine of this process's writes:
        fenced by the lease on PostgreSQL, ``engine`` itself when alone."""
        self._engine = engine
        if lease is None:
            return engine
        from monitor.runtime.lease import LeaseCoordinator
        from monitor.store.lease import Fence, fenced

        self.lease = LeaseCoordinator(self._config().database, lease)
        on_failure.callback(self.lease.dispose)
        self._coordinator = self.lease
        self.lead.lead_by(self.lease)
        writer = fenced(engine, Fence(self.lease.lead))
        await self.lease.step()  # the lead at once when it is free
        # Renewed from now on: the rest of start-up may take longer than a lease.
        self.lease.start(self.on_role)
        return writer

    async def load(
        self, engine: Engine
    ) -> tuple[dict[str, tuple[TagState, int]], dict[str, RegistryState]]:
        """The stored tag and registry states; loaded after the lease is ours, so every
        write of the previous leader is in, and the lead counts from then on."""
        from monitor.store.repository import load_registry_states, load_versioned_states
        from monitor.threads import in_thread

        epoch = self._coordinator.epoch if self._coordinator.is_leader() else None
        stored = await in_thread(load_versioned_states, engine)
        registries = await in_thread(load_registry_states, engine)
        if self._coordinator.is_leader() and self._coordinator.epoch == epoch:
            self.lead.loaded(epoch)
        return stored, registries

    def attach(
        self,
        *,
        cache: StateCache,
        recorder: Recorder,
        outages: Outages,
        metrics: Metrics,
        deliveries: Deliveries,
        targets: Targets | None = None,
    ) -> None:
        """The parts a change of role reloads or wakes; until then start() loads."""
        self._targets = targets
        self._cache = cache
        self._recorder = recorder
        self._outages = outages
        self._metrics = metrics
        self._deliveries = deliveries

    async def on_role(self, leading: bool, fresh: bool) -> None:
        """The lease coordinator's news: take the lead (loading the store first when another
        replica led meanwhile), or lose it (the checks and sends stop on their own)."""
        from monitor.store.repository import load_registry_states, load_versioned_states
        from monitor.threads import in_thread

        if not leading:
            if self._metrics is not None:
                self._metrics.forget_registries()  # a follower's gauges would page twice
            return
        if self._recorder is None or self._cache is None or self._engine is None:
            return  # still starting: start() loads, or the follower loop catches up
        epoch = self._coordinator.epoch
        if fresh:
            try:
                # The previous leader's listings first: ours go on from its selection.
                # In threads that a cancel waits for (stop() cancels the lease's consumer).
                tags = await in_thread(_stored_tags, self._engine)
                stored = await in_thread(load_versioned_states, self._engine)
                registries = await in_thread(load_registry_states, self._engine)
            except Exception as exc:
                log.warning("cannot load the states to lead: %s; trying again", reason(exc))
                return  # not loaded: not leading; the next renewal brings us back here
            if self._targets is not None:
                await self._targets.follow(tags)
            watches = self._watches()
            self._cache.load(stored, watches)
            if self._outages is not None:  # the outage the previous leader was in, if any
                self._outages.load(registries)
                self._outages.watch(watches, self._cache.states())
            await self._recorder.restart(self._cache.versions())
        if self._coordinator.is_leader() and self._coordinator.epoch == epoch:
            self.lead.loaded(epoch)
            if self._deliveries is not None:
                self._deliveries.wakeup()

    async def follow(self, every: float) -> None:
        """A follower's view of the store: the repository watches' tags (the leader's
        listings) and the states re-read every ``every`` seconds. Also a leader whose
        first load failed tries it again here."""
        from monitor.store.repository import load_versioned_states
        from monitor.threads import in_thread

        while True:
            await asyncio.sleep(every)
            if self.lead.is_leader():
                continue
            if self._coordinator.is_leader():
                await self.on_role(True, True)
                continue
            if self._engine is None or self._cache is None:
                continue  # pragma: no cover - follow() starts after attach()
            if self._recorder is not None and self._recorder.pending:
                # Results of our own lead not yet written (a database outage cost us the
                # lease): the cache is ahead of the store, and loading the store would
                # evaluate the next checks on a state older than those results.
                continue
            epoch = self._coordinator.epoch
            try:
                tags = await in_thread(_stored_tags, self._engine)
                stored = await in_thread(load_versioned_states, self._engine)
            except Exception:  # noqa: S112 - the API's reads say it (503), not each tick
                continue
            if not self._coordinator.is_leader() and self._coordinator.epoch == epoch:
                if self._targets is not None:
                    await self._targets.follow(tags)
                self._cache.load(stored, self._watches())


def _stored_tags(engine: Engine) -> dict[str, list[str]]:
    """The active watch keys by source: what the leader's listings (and files) selected."""
    from monitor.store.repository import active_watches

    by_source: dict[str, list[str]] = {}
    for row in active_watches(engine):
        by_source.setdefault(row.source, []).append(row.image)
    return by_source
