"""The service-wide instruments (checks, registry requests, deliveries, the database)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

import monitor
from monitor.domain import CheckResult
from monitor.metrics.state import _StateCollector

if TYPE_CHECKING:
    from monitor.view import ServiceView

__all__ = ["CHECK_DURATION_BUCKETS", "DELIVERY_OUTCOMES", "METRIC_NAMES", "Metrics"]

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
        "regmon_registry_failing",
        "regmon_registry_ratelimit_limit",
        "regmon_registry_ratelimit_remaining",
        "regmon_webhook_deliveries_total",
        "regmon_webhook_pending",
        "regmon_webhook_oldest_pending_age_seconds",
        "regmon_build_info",
        "regmon_database_up",
        "regmon_pending_results",
        "regmon_pending_results_dropped_total",
        "regmon_leader",
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
        self.registry_failing = Gauge(
            "regmon_registry_failing",
            "1 while the registry is failing (between registry.failing and registry.recovered).",
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
            "1 if the last write and the last read of the database succeeded, else 0.",
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
        self.leader = Gauge(
            "regmon_leader",
            "1 on the replica that checks, records and delivers (the lease holder), else 0.",
            registry=registry,
        )
        self.leader.set_function(lambda: 1.0 if view.is_leader() else 0.0)
        self._database_down = {"write": False, "read": False}
        self.collector = _StateCollector(view, on_read=self.observe_read)
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

    def observe_registries(self, failing: Mapping[str, bool], *, replace: bool = False) -> None:
        """Set ``regmon_registry_failing`` per registry; ``replace``: these are all there are."""
        if replace:
            self.registry_failing.clear()
        for name, value in failing.items():
            self.registry_failing.labels(name).set(1 if value else 0)

    def observe_ratelimit(self, registry: str, limit: int | None, remaining: int | None) -> None:
        """Record the ``ratelimit-*`` headers of a registry answer (``None``: not sent)."""
        if limit is not None:
            self.ratelimit_limit.labels(registry).set(limit)
        if remaining is not None:
            self.ratelimit_remaining.labels(registry).set(remaining)

    def observe_database(self, *, up: bool) -> None:
        """Record whether the last write to the database succeeded."""
        self._observe_database("write", up)

    def observe_read(self, up: bool) -> None:
        """Record whether the last read (API, scrape) of the database succeeded."""
        self._observe_database("read", up)

    def _observe_database(self, side: str, up: bool) -> None:
        # Either side failing is an outage; a read that works does not hide a failing writer.
        if side == "read" and self._database_down[side] == (not up):
            return  # no news: the writer (the recorder) owns the gauge's first value
        self._database_down[side] = not up
        self.database_up.set(0 if any(self._database_down.values()) else 1)

    def forget_registries(self) -> None:
        """Drop the registry gauges a check set (a replica that no longer leads): the
        leader's are the ones in force, and two of them would page twice."""
        for gauge in (self.registry_up, self.ratelimit_limit, self.ratelimit_remaining):
            gauge.clear()

    def observe_delivery(self, webhook: str, outcome: str) -> None:
        """Count one delivery attempt: ``delivered``, ``failed``, ``retry`` or ``dead``."""
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        self.deliveries.labels(webhook, outcome).inc()
