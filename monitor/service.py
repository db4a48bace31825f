"""The one place that wires regmon's parts: config → scheduler → checker → store → metrics/API.

``Service.start()`` upgrades the database, loads the state, schedules every
watch, and serves HTTP in the same event loop; ``stop()`` drains in-flight
checks and flushes pending writes before closing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from monitor.config import Config, Watch, load_config, resolve_repositories
from monitor.domain import RepositoryState, TagState
from monitor.errors import RegmonError
from monitor.runtime.cache import StateCache
from monitor.runtime.checks import CheckRunner
from monitor.runtime.failure import reason
from monitor.runtime.watches import sync_watches
from monitor.sources.all import sources_for
from monitor.sources.base import targets_of

if TYPE_CHECKING:
    import uvicorn
    from prometheus_client import CollectorRegistry
    from sqlalchemy.engine import Engine

    from monitor.metrics import Metrics
    from monitor.registry.client import RegistryClient
    from monitor.registry.transport import TransportFactory
    from monitor.runtime.deliveries import Deliveries
    from monitor.runtime.leader import Coordinator, LoadedLead
    from monitor.runtime.lease import LeaseCoordinator
    from monitor.runtime.listings import Listings
    from monitor.runtime.outages import Outages
    from monitor.runtime.recorder import Recorder
    from monitor.runtime.reloader import Reloader
    from monitor.runtime.targets import Targets
    from monitor.scheduler import WatchScheduler
    from monitor.sources.base import WatchSource
    from monitor.store.lockfile import ProcessLock
    from monitor.store.repository import Record, Recorded

__all__ = ["Service", "run_service"]

log = logging.getLogger("regmon")

# Stop: checks that hold a registry slot get this long to finish (their own budget
# usually ends them first); queued ones are dropped at once.
STOP_CHECK_GRACE = 10.0
# Stop: how long pending results may keep trying to reach the database.
STOP_WRITE_GRACE = 10.0
# POST …/check waits this long for its result to be written before answering 503.
CHECK_NOW_WRITE_WAIT = 3.0


class Service:
    """Owns engine, HTTP client, scheduler, metrics and the HTTP server."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        metrics_registry: CollectorRegistry | None = None,
        transport_factory: TransportFactory | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        from monitor.runtime.leader import LoadedLead, SingleProcess

        self._config = config
        self._config_path = config_path
        self._coordinator: Coordinator = coordinator or SingleProcess()
        self._coordinator_given = coordinator is not None
        self._lease: LeaseCoordinator | None = None  # PostgreSQL: replicas share the database
        self._lead: LoadedLead = LoadedLead(self._coordinator)
        self._writer: Engine | None = None  # the engine of the leader's (fenced) writes
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self._watches: dict[str, Watch] = targets_of(sources_for(config))
        self._cache = StateCache()  # of the store's tag states: the store is the authority
        self._checks = CheckRunner(
            config=lambda: self._config,
            watches=lambda: self._watches,
            coordinator=self._lead,
            transport_factory=transport_factory,
        )
        self._recorder: Recorder | None = None
        self._outages: Outages | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._reloader: Reloader | None = None
        self._targets: Targets | None = None
        self._listings: Listings | None = None
        self._engine: Engine | None = None
        self._db_lock: ProcessLock | None = None  # SQLite: one replica per file
        self._scheduler: WatchScheduler | None = None
        self._metrics: Metrics | None = None
        self._server: uvicorn.Server | None = None
        self._deliveries: Deliveries | None = None

    # -- ServiceView -------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("service not started")
        return self._engine

    def watches(self) -> Sequence[Watch]:
        return list(self._watches.values())

    def states(self) -> Mapping[str, TagState]:
        return self._cache.states()

    def repositories(self) -> Sequence[RepositoryState]:
        if self._targets is None or self._listings is None:
            return []
        from monitor.sources.repository import RepositorySource

        listed = self._listings.states()
        shown = []
        for source in self._targets.sources():
            if isinstance(source, RepositorySource):
                last = listed.get(source.watch.key)
                shown.append(
                    RepositoryState(
                        key=source.watch.key,
                        tags=tuple(w.key for w in source.targets()),
                        status=None if last is None else last.status,
                        reason=None if last is None else last.reason,
                        detail=None if last is None else last.detail,
                        listed_at=None if last is None else last.listed_at,
                        listed=0 if last is None else last.listed,
                    )
                )
        return shown

    async def list_repository(self, key: str) -> RepositoryState:
        """List repository watch ``key`` now and apply what came and went; KeyError if
        it is not watched."""
        if self._listings is None or await self._listings.list_now(key) is None:
            raise KeyError(key)
        for shown in self.repositories():
            if shown.key == key:
                return shown
        raise KeyError(key)  # pragma: no cover - a listed repository is shown

    def is_leader(self) -> bool:
        return self._lead.is_leader()

    def is_ready(self) -> bool:
        if self._engine is None or self._scheduler is None or not self._scheduler.running:
            return False
        if self._recorder is not None and not self._recorder.healthy():
            return False  # reads may still work (full disk, lock): writes do not
        from monitor.store.engine import check_schema

        try:
            check_schema(self._engine)
        except Exception:
            return False
        return True

    async def check_now(self, key: str) -> TagState:
        if key not in self._watches:
            raise KeyError(key)
        if not self._lead.is_leader():
            from monitor.store.lease import Fenced

            raise Fenced("this replica follows: only the leader checks (ask the leader)")
        await self._checks.check(key)
        if self._recorder is not None:
            await self._recorder.flush_now(CHECK_NOW_WRITE_WAIT)
        state = self._cache.get(key)
        if state is None:  # pragma: no cover - a check always leaves a state
            raise KeyError(key)
        return state

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, serve_http: bool = True) -> None:
        from monitor.metrics import Metrics
        from monitor.notify.routing import Router
        from monitor.runtime.deliveries import Deliveries
        from monitor.runtime.http import bind, make_server
        from monitor.runtime.listings import Listings
        from monitor.runtime.outages import Outages
        from monitor.runtime.pruner import Pruner
        from monitor.runtime.recorder import Recorder
        from monitor.runtime.reloader import Reloader
        from monitor.runtime.targets import Targets
        from monitor.scheduler import WatchScheduler
        from monitor.sources.deployment import read_sources
        from monitor.store.engine import (
            make_engine,
            redact_url,
            refuse_empty_sqlite_file,
            upgrade,
        )
        from monitor.store.health import wait_for_database
        from monitor.store.lease import Fence, fenced
        from monitor.store.lockfile import hold_sqlite_lock
        from monitor.store.repository import load_registry_states, load_versioned_states
        from monitor.web.app import create_app

        # Bind first: a taken port (say, a second regmon started by mistake) is a
        # one-line error before the database is touched.
        sock = bind(self._config) if serve_http else None
        with contextlib.ExitStack() as on_failure:
            if sock is not None:
                on_failure.callback(sock.close)
            # Every trigger built before the database is touched: a schedule the
            # scheduler cannot hold is a one-line error, the watches table unchanged.
            scheduler = WatchScheduler(
                self._checks.scheduled,
                concurrency=lambda host: self._config.registry_settings(host).max_concurrency,
            )
            # Deployment files read before the database too: one that does not read
            # refuses the start, with nothing stored changed.
            sources = sources_for(self._config)
            await asyncio.to_thread(read_sources, sources)
            self._watches = targets_of(sources)
            plan = scheduler.plan(self.watches())
            listings = Listings(
                list_tags=self._checks.list_tags,
                record_deleted=self._checks.record_deleted,
                check_new=self._checks.check_new,
                may_run=self._lead.is_leader,
            )
            listing_plan = listings.plan(resolve_repositories(self._config))
            self._config = _resolved(self._config)
            refuse_empty_sqlite_file(self._config.database)
            self._db_lock = hold_sqlite_lock(self._config.database)
            if self._db_lock is not None:
                on_failure.callback(self._db_lock.release)
            lease = self._lease_seconds()
            self._engine = make_engine(self._config.database, **_session_options(lease))
            on_failure.callback(self._engine.dispose)
            await wait_for_database(self._engine)
            await asyncio.to_thread(upgrade, self._engine)
            self._writer = self._engine
            if lease is not None:
                from monitor.runtime.lease import LeaseCoordinator

                self._lease = LeaseCoordinator(self._config.database, lease)
                on_failure.callback(self._lease.dispose)
                self._coordinator = self._lease
                self._lead.lead_by(self._lease)
                self._writer = fenced(self._engine, Fence(self._lease.lead))
                await self._lease.step()  # the lead at once when it is free
                # Renewed from now on: the rest of start-up may take longer than a lease.
                self._lease.start(self._on_role)
            # Loaded after the lease is ours: every write of the previous leader is in.
            epoch = self._coordinator.epoch if self._coordinator.is_leader() else None
            stored = await asyncio.to_thread(load_versioned_states, self._engine)
            registries = await asyncio.to_thread(load_registry_states, self._engine)
            if self._coordinator.is_leader() and self._coordinator.epoch == epoch:
                self._lead.loaded(epoch)
            await self._seed(sources)
            targets = Targets(
                sources, scheduler=scheduler, sync=self._sync_watches, on_change=self._set_watches
            )
            self._watches = dict(targets.watches)
            plan = scheduler.plan(self.watches())  # with the targets dynamic sources stored
            # Exclusive: a source no longer configured (since the last run) retires.
            await self._sync_watches(targets.rows_for(sources), exclusive=True)
            on_failure.pop_all()
        self._targets = targets
        listings.use(targets)
        self._listings = listings
        self._metrics = Metrics(self.metrics_registry, self)
        self._outages = Outages(registries, self._metrics)
        self._cache = StateCache(stored, self._outages)
        self._cache.keep(self._watches)
        self._outages.watch(self._watches, self._cache.states())
        self._recorder = Recorder(
            self._write_batch,
            prepare=Router(lambda: self._config, self._outages.webhooks).prepare,
            stored_versions=self._cache.versions(),
            on_refused=self._checks.reevaluate,
            on_written=self._written,
            coordinator=self._lead,
            metrics=self._metrics,
        )
        self._checks.start(cache=self._cache, recorder=self._recorder, metrics=self._metrics)
        self._scheduler = scheduler
        self._scheduler.commit(plan)
        self._scheduler.start()
        listings.commit(listing_plan)
        listings.start()
        self._recorder.start()
        pruner = Pruner(self._writer, lambda: self._config.retention, may_run=self._lead.is_leader)
        self._tasks.append(asyncio.create_task(pruner.run(), name="regmon-pruner"))
        self._deliveries = Deliveries(
            self._writer,
            lambda: self._config,
            self._metrics,
            may_send=self._lead.is_leader,
        )
        self._deliveries.start()
        if self._lease is not None:
            self._tasks.append(
                asyncio.create_task(self._follow(self._lease.renew_every), name="regmon-follow")
            )
        if self._config_path:
            self._reloader = Reloader(
                self._config_path,
                current=lambda: self._config,
                scheduler=scheduler,
                make_client=self._checks.make_client,
                sync_watches=self._sync_watches,
                commit=self._commit_config,
                targets=targets,
                listings=listings,
            )
            self._tasks.append(
                asyncio.create_task(self._reloader.watch_file(), name="regmon-config")
            )
        if sock is not None:
            app = create_app(self, self.metrics_registry, on_read=self._metrics.observe_read)
            self._server = make_server(app, self._config)
            serving = asyncio.create_task(self._server.serve(sockets=[sock]), name="regmon-http")
            self._tasks.append(serving)
            while not self._server.started:
                if serving.done():
                    raise RegmonError(
                        f"listen {self._config.listen}: the HTTP server did not start"
                    )
                await asyncio.sleep(0.01)
        log.info(
            "regmon started: %d watches, database %s, listening on %s%s",
            len(self._watches),
            redact_url(self._config.database),
            self._config.listen if serve_http else "-",
            "" if self._lease is None else f", {'leader' if self.is_leader() else 'follower'}",
        )

    async def stop(self) -> None:
        """Stop scheduling, drain in-flight checks, flush writes, close everything.

        Bounded: queued checks are dropped at once, checks in flight get
        ``STOP_CHECK_GRACE``, pending writes ``STOP_WRITE_GRACE``, webhook sends
        in flight their timeout (concurrently with the rest).
        """
        sends = self._deliveries.stop() if self._deliveries is not None else None
        # Order matters: the scheduler's shutdown() cancels the checks still running, so
        # wait for the in-flight checks first; checks started meanwhile return at once.
        # Due checks still waiting in the scheduler's lanes are dropped with the queued.
        dropped = self._scheduler.drop_queued() if self._scheduler is not None else 0
        await self._checks.drain(STOP_CHECK_GRACE, dropped=dropped)
        if self._listings is not None:
            await self._listings.stop(STOP_CHECK_GRACE)
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._recorder is not None:
            await self._recorder.close(STOP_WRITE_GRACE)
        if sends is not None:
            try:
                await sends
            except Exception as exc:  # keep stopping: everything below must still be closed
                log.error("stopping the webhook dispatcher failed: %s", reason(exc))
        if self._lease is not None:
            await self._lease.close()  # written and delivered: the next leader may start now
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "regmon-http":
                task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # keep stopping: everything below must still be closed
                log.exception("task %s failed", task.get_name())
        await self._checks.aclose()
        if self._deliveries is not None:
            await self._deliveries.aclose()
        if self._engine is not None:
            self._engine.dispose()
        if self._db_lock is not None:
            self._db_lock.release()
        log.info("regmon stopped")

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        from monitor.runtime.startup import start_unless_stopped

        if not await start_unless_stopped(self.start(), stop):
            return
        await stop.wait()
        await self.stop()

    # -- replicas (PostgreSQL) ---------------------------------------------------------

    def _lease_seconds(self) -> float | None:
        """The lease of replicas sharing a PostgreSQL database; None: this process is alone."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if self._coordinator_given:
            return None
        try:
            backend = make_url(self._config.database).get_backend_name()
        except ArgumentError:
            return None  # make_engine says what is wrong with it
        return self._config.ha.lease if backend == "postgresql" else None

    async def _on_role(self, leading: bool, fresh: bool) -> None:
        """The lease coordinator's news: take the lead (loading the store first when another
        replica led meanwhile), or lose it (the checks and sends stop on their own)."""
        from monitor.store.repository import load_registry_states, load_versioned_states

        if not leading:
            if self._metrics is not None:
                self._metrics.forget_registries()  # a follower's gauges would page twice
            return
        if self._recorder is None:
            return  # still starting: start() loads, or the follower loop catches up
        epoch = self._coordinator.epoch
        if fresh:
            try:
                stored = await asyncio.to_thread(load_versioned_states, self.engine)
                registries = await asyncio.to_thread(load_registry_states, self.engine)
            except Exception as exc:
                log.warning("cannot load the states to lead: %s; trying again", reason(exc))
                return  # not loaded: not leading; the next renewal brings us back here
            self._cache.load(stored, self._watches)
            if self._outages is not None:  # the outage the previous leader was in, if any
                self._outages.load(registries)
                self._outages.watch(self._watches, self._cache.states())
            if self._recorder is not None:
                await self._recorder.restart(self._cache.versions())
        if self._coordinator.is_leader() and self._coordinator.epoch == epoch:
            self._lead.loaded(epoch)
            if self._deliveries is not None:
                self._deliveries.wakeup()

    async def _follow(self, every: float) -> None:
        """A follower's view of the store: states re-read every ``every`` seconds. Also a
        leader whose first load failed tries it again here."""
        from monitor.store.repository import load_versioned_states

        while True:
            await asyncio.sleep(every)
            if self._lead.is_leader():
                continue
            if self._coordinator.is_leader():
                await self._on_role(True, True)
                continue
            epoch = self._coordinator.epoch
            try:
                stored = await asyncio.to_thread(load_versioned_states, self.engine)
            except Exception:  # noqa: S112 - the API's reads say it (503), not each tick
                continue
            if not self._coordinator.is_leader() and self._coordinator.epoch == epoch:
                self._cache.load(stored, self._watches)

    # -- reload ------------------------------------------------------------------------

    def _reload_soon(self) -> None:
        if self._reloader is not None:
            self._reloader.reload_soon()

    async def reload(self) -> bool:
        """Re-read the config file (``monitor.runtime.reloader``); False if refused."""
        if self._reloader is None:
            return False
        return await self._reloader.reload()

    async def _sync_watches(
        self, by_source: Mapping[str, Sequence[Watch]], *, exclusive: bool = False
    ) -> None:
        await sync_watches(self.engine, by_source, exclusive=exclusive)

    async def _seed(self, sources: Sequence[WatchSource]) -> None:
        """Dynamic sources start from the watches the store holds for them (a restart)."""
        from monitor.runtime.targets import DynamicSource
        from monitor.store.repository import active_watches

        dynamic = [source for source in sources if isinstance(source, DynamicSource)]
        if not dynamic:
            return
        rows = await asyncio.to_thread(active_watches, self.engine)
        for source in dynamic:
            source.seed([row.image for row in rows if row.source == source.name])

    def _set_watches(self, watches: Mapping[str, Watch]) -> None:
        """Every change of the watch set ends here: a reload, a listing, a deployment file."""
        self._watches = dict(watches)
        if self._outages is not None:
            self._outages.watch(self._watches, self._cache.states())

    def _commit_config(
        self, config: Config, watches: Mapping[str, Watch], client: RegistryClient | None
    ) -> None:
        if client is not None:
            self._checks.swap_client(client)
        self._config = _resolved(config)
        self._watches = dict(watches)

    # -- writes ----------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending evaluation now; ``DatabaseUnavailable`` if the database fails."""
        if self._recorder is not None:
            await self._recorder.flush()

    def _write_batch(self, batch: Sequence[Record]) -> Recorded:
        """One transaction for a prepared batch (state, history, events, outbox); in a worker
        thread."""
        from monitor.store.repository import record_evaluations

        return record_evaluations(self._writer or self.engine, batch)

    def _written(self) -> None:
        if self._deliveries is not None:
            self._deliveries.wakeup()


def _resolved(config: Config) -> Config:
    """``config`` without its ``watch:`` entries, once its sources have resolved them: at
    50,000 watches they are ~30 MB of pydantic models that nothing reads again."""
    return config.model_copy(update={"watch": ()}) if config.watch else config


def _session_options(lease: float | None) -> dict[str, Any]:
    if lease is None:
        return {}
    from monitor.runtime.lease import session_options

    return session_options(lease)


def run_service(config_path: str) -> None:
    """``regmon run``: load, start, serve until SIGTERM/SIGINT."""
    from monitor.logs import setup_logging

    config = load_config(config_path)
    setup_logging(config.log.level, config.log.format)
    service = Service(config, config_path=config_path)
    del config  # the service keeps what it needs of it (``_resolved``)
    asyncio.run(service.run_until_signalled())
