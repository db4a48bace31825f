"""Prometheus metrics (SPEC §7) on an injected ``CollectorRegistry``.

Two halves:

* ``Metrics`` owns the service-wide instruments the service updates as work
  happens (checks, registry requests, webhook deliveries).
* ``_StateCollector`` is registered beside them and builds the per-image
  families at scrape time from ``ServiceView.watches()``/``states()``, plus
  the webhook backlog from one grouped query on the ``deliveries`` table. The
  state is read on every scrape, so nothing can drift and a restart resets
  nothing that is persisted (``digest_changes`` lives in ``TagState``).

Labels follow SPEC §7: ``image`` is the watch key; no label is named
``namespace``/``pod``/``job``/``instance``; a digest only ever appears in
``regmon_image_digest_info``; no error text, timestamp or version in a label
(``regmon_build_info{version}`` is the one sanctioned exception, by SPEC).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import monitor
from monitor.domain import CheckResult, DeliveryStatus, Status

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.view import ServiceView

__all__ = ["CHECK_DURATION_BUCKETS", "DELIVERY_OUTCOMES", "METRIC_NAMES", "Metrics"]

log = logging.getLogger(__name__)

# A HEAD on a nearby registry takes a few ms; a token dance plus a slow GET
# through a proxy can approach the 10 s default timeout, retries beyond it.
CHECK_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
DELIVERY_OUTCOMES: Final = ("delivered", "failed", "retry", "dead")
_PENDING_STATUSES: Final = tuple(status.value for status in DeliveryStatus.waiting())
_AVAILABLE: Final = {Status.PRESENT: 1.0, Status.MISSING: 0.0, Status.DENIED: 0.0}

# Names as they appear in the exposition and in PromQL (histograms by their
# base name: ``_bucket``, ``_sum`` and ``_count`` are derived).
METRIC_NAMES: Final[frozenset[str]] = frozenset(
    {
        "regmon_image_available",
        "regmon_image_status",
        "regmon_image_digest_info",
        "regmon_image_last_check_timestamp_seconds",
        "regmon_image_last_decided_timestamp_seconds",
        "regmon_image_last_change_timestamp_seconds",
        "regmon_image_check_interval_seconds",
        "regmon_image_digest_changes_total",
        "regmon_watched_images",
        "regmon_checks_total",
        "regmon_check_duration_seconds",
        "regmon_registry_requests_total",
        "regmon_registry_up",
        "regmon_registry_ratelimit_limit",
        "regmon_registry_ratelimit_remaining",
        "regmon_webhook_deliveries_total",
        "regmon_webhook_pending",
        "regmon_webhook_oldest_pending_age_seconds",
        "regmon_build_info",
        "regmon_database_up",
        "regmon_pending_results",
        "regmon_pending_results_dropped_total",
    }
)


class Metrics:
    """Every regmon metric, registered on ``registry``; state families read ``view`` at scrape."""

    def __init__(self, registry: CollectorRegistry, view: ServiceView) -> None:
        # No ``_created`` series (SPEC §7): they double the series count and
        # nothing reads them. The library's only switch is process-wide; it is
        # flipped here, where regmon builds its metrics, and nowhere else.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = registry
        self.checks = Counter(
            "regmon_checks_total",
            "Checks of watched tags by outcome; reason is empty for decided checks.",
            ["registry", "status", "reason"],
            registry=registry,
        )
        self.check_duration = Histogram(
            "regmon_check_duration_seconds",
            "Duration of one check of one reference, retries included.",
            ["registry"],
            buckets=CHECK_DURATION_BUCKETS,
            registry=registry,
        )
        self.registry_requests = Counter(
            "regmon_registry_requests_total",
            "HTTP requests to registries; code is the HTTP status or 'error' for no answer.",
            ["registry", "method", "code"],
            registry=registry,
        )
        self.registry_up = Gauge(
            "regmon_registry_up",
            "1 if the last request to the registry got an HTTP answer, else 0.",
            ["registry"],
            registry=registry,
        )
        self.ratelimit_limit = Gauge(
            "regmon_registry_ratelimit_limit",
            "Pull limit announced by the registry (Docker Hub ratelimit-limit header).",
            ["registry"],
            registry=registry,
        )
        self.ratelimit_remaining = Gauge(
            "regmon_registry_ratelimit_remaining",
            "Pulls left in the window (Docker Hub ratelimit-remaining header).",
            ["registry"],
            registry=registry,
        )
        self.deliveries = Counter(
            "regmon_webhook_deliveries_total",
            "Webhook delivery attempts by outcome (delivered, failed, retry, dead).",
            ["webhook", "outcome"],
            registry=registry,
        )
        self.build_info = Gauge(
            "regmon_build_info",
            "Always 1; the version of regmon in the label.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(monitor.__version__).set(1)
        self.database_up = Gauge(
            "regmon_database_up",
            "1 if the last write to the database succeeded, else 0.",
            registry=registry,
        )
        self.pending_results = Gauge(
            "regmon_pending_results",
            "Check results waiting in memory to be written to the database.",
            registry=registry,
        )
        self.pending_dropped = Counter(
            "regmon_pending_results_dropped_total",
            "Check results dropped unwritten because too many waited for the database.",
            registry=registry,
        )
        self.collector = _StateCollector(view)
        registry.register(self.collector)

    def observe_check(self, result: CheckResult, registry: str) -> None:
        """Count one finished check and its duration; record rate limits it saw."""
        reason = "" if result.status.decided else str(result.reason or "")
        self.checks.labels(registry, str(result.status), reason).inc()
        self.check_duration.labels(registry).observe(max(result.duration_ms, 0.0) / 1000.0)
        self.observe_ratelimit(registry, result.ratelimit_limit, result.ratelimit_remaining)

    def observe_request(self, registry: str, method: str, code: str) -> None:
        """Count one HTTP request; ``code`` is the status (``"200"``) or ``"error"``."""
        self.registry_requests.labels(registry, method.upper(), code).inc()
        self.registry_up.labels(registry).set(0 if code == "error" else 1)

    def observe_ratelimit(self, registry: str, limit: int | None, remaining: int | None) -> None:
        """Record the ``ratelimit-*`` headers of a registry answer (``None``: not sent)."""
        if limit is not None:
            self.ratelimit_limit.labels(registry).set(limit)
        if remaining is not None:
            self.ratelimit_remaining.labels(registry).set(remaining)

    def observe_database(self, *, up: bool) -> None:
        """Record whether the last write to the database succeeded."""
        self.database_up.set(1 if up else 0)

    def observe_delivery(self, webhook: str, outcome: str) -> None:
        """Count one delivery attempt: ``delivered``, ``failed``, ``retry`` or ``dead``."""
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        self.deliveries.labels(webhook, outcome).inc()


@dataclass(slots=True)
class _Families:
    """The families one scrape fills; a fresh set per scrape."""

    available: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_available",
            "1 if the tag was present at the last decided check, 0 if missing or denied.",
            labels=["image", "registry", "repository", "tag"],
        )
    )
    status: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_status",
            "Status of the last check as a state set: 1 for the current status.",
            labels=["image", "status"],
        )
    )
    digest_info: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_digest_info",
            "Always 1; the last digest seen while present in the label.",
            labels=["image", "digest"],
        )
    )
    last_check: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_last_check_timestamp_seconds",
            "Unix time of the last check.",
            labels=["image"],
        )
    )
    last_decided: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_last_decided_timestamp_seconds",
            "Unix time of the last check that was not an error.",
            labels=["image"],
        )
    )
    last_change: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_last_change_timestamp_seconds",
            "Unix time of the last change of presence or digest.",
            labels=["image"],
        )
    )
    interval: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_image_check_interval_seconds",
            "Seconds between checks (for a cron watch: between its next two fire times).",
            labels=["image"],
        )
    )
    digest_changes: CounterMetricFamily = field(
        default_factory=lambda: CounterMetricFamily(
            "regmon_image_digest_changes",
            "Times the tag's digest changed (overwritten upstream); survives restarts.",
            labels=["image"],
        )
    )
    watched: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_watched_images", "Tags watched by the config in force."
        )
    )
    pending: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_webhook_pending",
            "Webhook deliveries waiting to be sent (pending or sending).",
            labels=["webhook"],
        )
    )
    oldest_pending: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "regmon_webhook_oldest_pending_age_seconds",
            "Age of the oldest delivery waiting to be sent; 0 when none.",
            labels=["webhook"],
        )
    )

    def all(self) -> list[Metric]:
        return [getattr(self, name.name) for name in fields(self)]


class _StateCollector(Collector):
    """Per-image families and the webhook backlog, built from current state on each scrape."""

    def __init__(self, view: ServiceView) -> None:
        self._view = view
        self._backlog_failing = False
        self._cron_lock = threading.Lock()
        # cron string -> (interval seconds, valid until): an irregular schedule
        # ("0 9 * * mon-fri") has a different gap after each fire time.
        self._cron_intervals: dict[str, tuple[float, datetime]] = {}

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse a clash without reading state.
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        out = _Families()
        watches = self._view.watches()
        states = self._view.states()
        now = datetime.now(UTC)
        for watch in watches:
            key = watch.key
            seconds = self._interval_seconds(watch.interval, watch.cron, now)
            if seconds is not None:
                out.interval.add_metric([key], seconds)
            state = states.get(key)
            if state is None:
                continue
            if state.decided_status in _AVAILABLE:
                ref = watch.image
                out.available.add_metric(
                    [key, ref.registry, ref.repository, ref.tag or ""],
                    _AVAILABLE[state.decided_status],
                )
            if state.status is not None:
                for candidate in Status:
                    out.status.add_metric(
                        [key, str(candidate)], 1.0 if candidate is state.status else 0.0
                    )
            if state.digest:
                out.digest_info.add_metric([key, state.digest], 1.0)
            for family, moment in (
                (out.last_check, state.last_checked),
                (out.last_decided, state.last_decided),
                (out.last_change, state.last_changed),
            ):
                if moment is not None:
                    family.add_metric([key], _epoch(moment))
            out.digest_changes.add_metric([key], float(state.digest_changes))
        out.watched.add_metric([], float(len(watches)))
        self._add_backlog(out, now)
        return out.all()

    def _add_backlog(self, out: _Families, now: datetime) -> None:
        from monitor.store.engine import error_line, is_database_error

        try:
            backlog = _read_backlog(self._view.engine)
        except Exception as exc:
            # A scrape must never fail: drop these series, keep the rest. A database
            # outage is said once (regmon_database_up tells the rest), a bug every time.
            if not is_database_error(exc):
                log.warning("cannot read the webhook backlog for /metrics", exc_info=True)
            elif not self._backlog_failing:
                log.warning("cannot read the webhook backlog for /metrics: %s", error_line(exc))
            self._backlog_failing = True
            return
        self._backlog_failing = False
        names = [webhook.name for webhook in self._view.config.webhooks]
        # A removed webhook whose deliveries are still waiting stays visible.
        names.extend(name for name in sorted(backlog) if name not in names)
        for name in names:
            count, first = backlog.get(name, (0, None))
            age = 0.0 if first is None or count == 0 else max((now - first).total_seconds(), 0.0)
            out.pending.add_metric([name], float(count))
            out.oldest_pending.add_metric([name], age)

    def _interval_seconds(
        self, interval: float | None, cron: str | None, now: datetime
    ) -> float | None:
        if interval is not None:
            return float(interval)
        if cron is None:
            return None
        with self._cron_lock:
            cached = self._cron_intervals.get(cron)
            if cached is not None and now < cached[1]:
                return cached[0]
            try:
                computed = self._cron_interval(cron, now)
            except Exception:
                log.warning("cannot compute the interval of cron %r", cron, exc_info=True)
                return None
            if computed is None:
                return None
            self._cron_intervals[cron] = computed
            return computed[0]

    @staticmethod
    def _cron_interval(cron: str, now: datetime) -> tuple[float, datetime] | None:
        from monitor.scheduler import cron_gap  # apscheduler: only for cron watches

        gap = cron_gap(cron, now)
        if gap is None:
            return None
        # Valid until the first fire time passes: then the next gap applies.
        return gap[0], gap[1] + timedelta(microseconds=1)


def _read_backlog(engine: Engine) -> dict[str, tuple[int, datetime | None]]:
    """``{webhook: (waiting deliveries, oldest created_at)}`` in one grouped query."""
    from sqlalchemy import func, select

    from monitor.store.models import Base

    deliveries = Base.metadata.tables["deliveries"]
    query = (
        select(deliveries.c.webhook, func.count(), func.min(deliveries.c.created_at))
        .where(deliveries.c.status.in_(_PENDING_STATUSES))
        .group_by(deliveries.c.webhook)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {str(name): (int(count), _aware(first)) for name, count, first in rows}


def _aware(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):  # an aggregate the driver did not convert
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
