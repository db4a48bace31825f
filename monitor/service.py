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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from monitor.config import Config, Watch, load_config, resolve_repositories
from monitor.records import RepositoryState, TagState
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
    from monitor.runtime.leader import Coordinator
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

        from monitor.runtime.replica import Replica

        self._config = config
        self._config_path = config_path
        self._replica = Replica(
            coordinator, config=lambda: self._config, watches=lambda: self._watches
        )
        self._lead = self._replica.lead
        self._writer: Engine | None = None  # the engine of the leader's (fenced) writes
        self.metrics_registry = metrics_registry or CollectorRegistry()
        # Built once (the config's watches resolved once); ``start`` reads them.
        self._sources: list[WatchSource] | None = sources_for(config)
        self._watches: dict[str, Watch] = targets_of(self._sources)
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
        return [] if self._listings is None else self._listings.shown()

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
        from monitor.runtime.http import bind, make_server, serve
        from monitor.runtime.listings import Listings
        from monitor.runtime.outages import Outages
        from monitor.runtime.pruner import Pruner
        from monitor.runtime.recorder import Recorder
        from monitor.runtime.reloader import Reloader
        from monitor.runtime.startup import open_store
        from monitor.runtime.targets import Targets
        from monitor.runtime.watches import seed_sources
        from monitor.scheduler import WatchScheduler
        from monitor.sources.deployment import read_sources
        from monitor.store.engine import redact_url
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
            sources, self._sources = self._sources or sources_for(self._config), None
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
            store = await open_store(self._config, self._replica, on_failure)
            self._engine, self._writer, self._db_lock = store.engine, store.writer, store.lock
            await seed_sources(self.engine, sources)
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
        self._outages = Outages(store.registries, self._metrics)
        self._cache = StateCache(store.stored, self._outages)
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
        self._replica.attach(
            cache=self._cache,
            recorder=self._recorder,
            outages=self._outages,
            metrics=self._metrics,
            deliveries=self._deliveries,
            targets=targets,
        )
        if (lease := self._replica.lease) is not None:
            follow = self._replica.follow(lease.renew_every)
            self._tasks.append(asyncio.create_task(follow, name="regmon-follow"))
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
            self._tasks.append(await serve(self._server, sock, self._config))
        log.info(
            "regmon started: %d watches, database %s, listening on %s%s",
            len(self._watches),
            redact_url(self._config.database),
            self._config.listen if serve_http else "-",
            ""
            if self._replica.lease is None
            else f", {'leader' if self.is_leader() else 'follower'}",
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
        if self._replica.lease is not None:
            await (
                self._replica.lease.close()
            )  # written and delivered: the next leader may start now
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

    async def run_until_signalled(self, *, on_started: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        from monitor.runtime.startup import start_unless_stopped

        if not await start_unless_stopped(self.start(), stop):
            return
        if on_started is not None:
            on_started()
        await stop.wait()
        await self.stop()

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


def run_service(config_path: str) -> None:
    """``regmon run``: load, start, serve until SIGTERM/SIGINT."""
    from monitor.logs import setup_logging
    from monitor.runtime.startup import pause_collector, settle_collector

    pause_collector()
    config = load_config(config_path)
    setup_logging(config.log.level, config.log.format)
    service = Service(config, config_path=config_path)
    del config  # the service keeps what it needs of it (``_resolved``)
    asyncio.run(service.run_until_signalled(on_started=settle_collector))
