"""Prometheus metrics (SPEC §7) on an injected ``CollectorRegistry``.

Two halves:

* ``Metrics`` owns the service-wide instruments the service updates as work
  happens (checks, registry requests, webhook deliveries).
* ``_StateCollector`` is registered beside them and builds the per-image
  families at scrape time from ``ServiceView.watches()``/``states()``, plus
  the webhook backlog from one grouped query on the ``deliveries`` table. The
  state is read on every scrape, so nothing can drift and a restart resets
  nothing that is persisted (``digest_changes`` lives in ``TagState``).
  The per-image families (8 series per watch, ~400,000 at 50,000 watches)
  are rendered straight to exposition lines, and ``exposition()`` (what
  ``GET /metrics`` serves) writes those lines as they are; everything else
  goes through the library's encoders.

Labels follow SPEC §7: ``image`` is the watch key; no label is named
``namespace``/``pod``/``job``/``instance``; a digest only ever appears in
``regmon_image_digest_info``; no error text, timestamp or version in a label
(``regmon_build_info{version}`` is the one sanctioned exception, by SPEC).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

import monitor
from monitor.domain import CheckResult, DeliveryStatus, Status, TagState

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Watch
    from monitor.view import ServiceView

__all__ = ["CHECK_DURATION_BUCKETS", "DELIVERY_OUTCOMES", "METRIC_NAMES", "Metrics", "exposition"]

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
_AVAILABLE_TEXT: Final = {Status.PRESENT: "1", Status.MISSING: "0", Status.DENIED: "0"}

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

    def observe_delivery(self, webhook: str, outcome: str) -> None:
        """Count one delivery attempt: ``delivered``, ``failed``, ``retry`` or ``dead``."""
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        self.deliveries.labels(webhook, outcome).inc()


class _Families(Collector):
    """Already collected families, handed to the library's encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The body and content type of ``GET /metrics`` for the request's ``Accept`` header.

    The format is negotiated as the library does (text 0.0.4 by default,
    OpenMetrics when asked for). Per-image families are written from their
    rendered lines; every other family goes through the library's encoder,
    which ends an OpenMetrics body with ``# EOF``, so it comes last.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    # One growing buffer rather than parts joined at the end: at 50,000
    # watches the body is ~40 MB, and a join would hold it twice.
    body = io.BytesIO()
    others: list[Metric] = []
    for family in registry.collect():
        if isinstance(family, _RenderedFamily):
            family.write(body, openmetrics)
        else:
            others.append(family)
    body.write(encoder(_Families(others)))
    return body.getvalue(), content_type


@dataclass(frozen=True, slots=True)
class _FamilySpec:
    """One per-image family: its OpenMetrics name, type and help."""

    name: str
    type: str
    documentation: str

    def header(self, openmetrics: bool) -> str:
        # Text 0.0.4 names a counter family by its sample name; OpenMetrics without _total.
        shown = self.name if openmetrics or self.type != "counter" else self.name + "_total"
        return f"# HELP {shown} {self.documentation}\n# TYPE {shown} {self.type}\n"


_AVAILABLE_FAMILY: Final = _FamilySpec(
    "regmon_image_available",
    "gauge",
    "1 if the tag was present at the last decided check, 0 if missing or denied.",
)
_STATUS_FAMILY: Final = _FamilySpec(
    "regmon_image_status",
    "gauge",
    "1 for the status of the last check (one series per image: the current status).",
)
_DIGEST_FAMILY: Final = _FamilySpec(
    "regmon_image_digest_info", "gauge", "Always 1; the last digest seen while present."
)
_LAST_CHECK_FAMILY: Final = _FamilySpec(
    "regmon_image_last_check_timestamp_seconds", "gauge", "Unix time of the last check."
)
_LAST_DECIDED_FAMILY: Final = _FamilySpec(
    "regmon_image_last_decided_timestamp_seconds",
    "gauge",
    "Unix time of the last check that was not an error.",
)
_LAST_CHANGE_FAMILY: Final = _FamilySpec(
    "regmon_image_last_change_timestamp_seconds",
    "gauge",
    "Unix time of the last change of presence or digest.",
)
_INTERVAL_FAMILY: Final = _FamilySpec(
    "regmon_image_check_interval_seconds",
    "gauge",
    "Seconds between checks (for a cron watch: between its next two fire times).",
)
_DIGEST_CHANGES_FAMILY: Final = _FamilySpec(
    "regmon_image_digest_changes",
    "counter",
    "Times the tag's digest changed (overwritten upstream); survives restarts.",
)
_IMAGE_FAMILIES: Final = (
    _AVAILABLE_FAMILY,
    _STATUS_FAMILY,
    _DIGEST_FAMILY,
    _LAST_CHECK_FAMILY,
    _LAST_DECIDED_FAMILY,
    _LAST_CHANGE_FAMILY,
    _INTERVAL_FAMILY,
    _DIGEST_CHANGES_FAMILY,
)


class _RenderedFamily(Metric):
    """A per-image family whose samples are already exposition lines.

    ``exposition`` writes ``lines`` as they are: at 50,000 watches the library's
    path (a ``Sample`` and a label dict per series, then formatting each one)
    took seconds and hundreds of MB per scrape. ``samples`` parses the lines on
    first use, so ``registry.collect()``, ``get_sample_value()`` and the
    library's encoders still see the same series.
    """

    def __init__(self, spec: _FamilySpec, lines: str) -> None:
        self.lines = lines
        self._parsed: list[Sample] | None = None
        super().__init__(spec.name, spec.documentation, spec.type)
        self.spec = spec

    @property
    def samples(self) -> list[Sample]:
        if self._parsed is None:
            text = self.spec.header(openmetrics=False) + self.lines
            self._parsed = [
                sample
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            ]
        return self._parsed

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ assigns an empty list; anything else replaces the lines.
        if value:
            self._parsed = list(value)

    def write(self, out: io.BytesIO, openmetrics: bool) -> None:
        out.write(self.spec.header(openmetrics).encode())
        out.write(self.lines.encode())


@dataclass(frozen=True, slots=True)
class _WatchLabels:
    """The label text of one ``Watch``, rendered once and reused while the watch stands."""

    watch: Watch
    image: str  # image="…" (escaped, no braces)
    available: str  # {image="…",registry="…",repository="…",tag="…"}
    interval: str | None  # the interval value of a watch with ``interval``


class _StateCollector(Collector):
    """Per-image families and the webhook backlog, built from current state on each scrape."""

    def __init__(self, view: ServiceView, on_read: Callable[[bool], None] | None = None) -> None:
        self._view = view
        self._on_read = on_read
        self._backlog_failing = False
        self._backlog: dict[str, tuple[int, datetime | None]] | None = None  # as last read
        self._cron_lock = threading.Lock()
        # cron string -> (interval seconds, valid until): an irregular schedule
        # ("0 9 * * mon-fri") has a different gap after each fire time.
        self._cron_intervals: dict[str, tuple[float, datetime]] = {}
        # Watch.key -> its label text; rebuilt each scrape from the watches in
        # force (a reload replaces the Watch objects), so it never outgrows them.
        self._labels: dict[str, _WatchLabels] = {}
        # Watch.key -> (state, its three timestamps as exposition text).
        self._times: dict[str, tuple[TagState, str | None, str | None, str | None]] = {}

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse a clash without reading state.
        return [
            *(_RenderedFamily(spec, "") for spec in _IMAGE_FAMILIES),
            *_service_families(),
        ]

    def collect(self) -> Iterable[Metric]:
        watches = self._view.watches()
        states = self._view.states()
        now = datetime.now(UTC)
        labels = self._watch_labels(watches)
        yield from self._image_families(labels, states, now)
        watched, pending, oldest_pending = _service_families()
        watched.add_metric([], float(len(watches)))
        yield watched
        self._add_backlog(pending, oldest_pending, now)
        yield pending
        yield oldest_pending

    def _watch_labels(self, watches: Sequence[Watch]) -> list[_WatchLabels]:
        known = self._labels
        fresh: dict[str, _WatchLabels] = {}
        for watch in watches:
            entry = known.get(watch.key)
            if entry is None or entry.watch is not watch:
                entry = _render_labels(watch)
            fresh[watch.key] = entry
        self._labels = fresh
        return list(fresh.values())

    def _image_families(
        self, labels: list[_WatchLabels], states: Mapping[str, TagState], now: datetime
    ) -> Iterator[_RenderedFamily]:
        # One family at a time, each joined as soon as its lines exist, so the
        # line strings of one family are freed before the next is built. Pairs
        # come from zip() over two flat lists: a tuple per watch would wake the
        # cyclic garbage collector, which then walks every live object.
        entries: list[_WatchLabels] = []
        found: list[TagState] = []
        for entry in labels:
            state = states.get(entry.watch.key)
            if state is not None:
                entries.append(entry)
                found.append(state)
        yield _RenderedFamily(
            _AVAILABLE_FAMILY,
            "".join(
                [
                    f"regmon_image_available{e.available} {_AVAILABLE_TEXT[s.decided_status]}\n"
                    for e, s in zip(entries, found, strict=True)
                    if s.decided_status in _AVAILABLE_TEXT
                ]
            ),
        )
        # One series per image, for its current status: a state set with a 0
        # series for every other status would be 3 more series per image that
        # no rule or panel reads (they all select == 1).
        yield _RenderedFamily(
            _STATUS_FAMILY,
            "".join(
                [
                    f'regmon_image_status{{{e.image},status="{s.status.value}"}} 1\n'
                    for e, s in zip(entries, found, strict=True)
                    if s.status is not None
                ]
            ),
        )
        yield _RenderedFamily(
            _DIGEST_FAMILY,
            "".join(
                [
                    f'regmon_image_digest_info{{{e.image},digest="{_escape(s.digest)}"}} 1\n'
                    for e, s in zip(entries, found, strict=True)
                    if s.digest
                ]
            ),
        )
        times = self._timestamps(entries, found)
        for index, spec in enumerate(
            (_LAST_CHECK_FAMILY, _LAST_DECIDED_FAMILY, _LAST_CHANGE_FAMILY), start=1
        ):
            name = spec.name
            yield _RenderedFamily(
                spec,
                "".join(
                    [
                        f"{name}{{{e.image}}} {value}\n"
                        for e, t in zip(entries, times, strict=True)
                        if (value := t[index]) is not None
                    ]
                ),
            )
        yield _RenderedFamily(
            _INTERVAL_FAMILY,
            "".join(
                [
                    f"regmon_image_check_interval_seconds{{{e.image}}} {value}\n"
                    for e in labels
                    if (value := e.interval or self._cron_text(e.watch.cron, now)) is not None
                ]
            ),
        )
        yield _RenderedFamily(
            _DIGEST_CHANGES_FAMILY,
            "".join(
                [
                    f"regmon_image_digest_changes_total{{{e.image}}} {s.digest_changes:d}\n"
                    for e, s in zip(entries, found, strict=True)
                ]
            ),
        )

    def _timestamps(
        self, entries: list[_WatchLabels], found: list[TagState]
    ) -> list[tuple[TagState, str | None, str | None, str | None]]:
        # Formatting a datetime as epoch seconds is half the cost of a scrape;
        # between two scrapes most states are the same objects, so their text is kept.
        known = self._times
        fresh: dict[str, tuple[TagState, str | None, str | None, str | None]] = {}
        out = []
        for entry, state in zip(entries, found, strict=True):
            key = entry.watch.key
            cached = known.get(key)
            if cached is None or cached[0] is not state:
                cached = (
                    state,
                    _epoch_text(state.last_checked),
                    _epoch_text(state.last_decided),
                    _epoch_text(state.last_changed),
                )
            fresh[key] = cached
            out.append(cached)
        self._times = fresh
        return out

    def _cron_text(self, cron: str | None, now: datetime) -> str | None:
        seconds = self._interval_seconds(None, cron, now)
        return None if seconds is None else repr(seconds)

    def _add_backlog(
        self, pending: GaugeMetricFamily, oldest_pending: GaugeMetricFamily, now: datetime
    ) -> None:
        from monitor.store.engine import error_line, is_database_error

        try:
            backlog = self._backlog = _read_backlog(self._view.engine)
        except Exception as exc:
            # A scrape must never fail. A database outage is said once (regmon_database_up
            # tells the rest), a bug every time. The backlog as last read stays (its age
            # keeps growing): nothing is delivered while the database is away, and series
            # that vanished or turned NaN would resolve the backlog alerts mid-outage and
            # page again when it ends.
            if not is_database_error(exc):
                log.warning("cannot read the webhook backlog for /metrics", exc_info=True)
            elif not self._backlog_failing:
                log.warning("cannot read the webhook backlog for /metrics: %s", error_line(exc))
            if is_database_error(exc) and self._on_read is not None:
                self._on_read(False)
            self._backlog_failing = True
            if self._backlog is None:
                return  # never read: no value to keep, none to make up
            backlog = self._backlog
        else:
            self._backlog_failing = False
            if self._on_read is not None:
                self._on_read(True)
        names = [webhook.name for webhook in self._view.config.webhooks]
        # A removed webhook whose deliveries are still waiting stays visible.
        names.extend(name for name in sorted(backlog) if name not in names)
        for name in names:
            count, first = backlog.get(name, (0, None))
            age = 0.0 if first is None or count == 0 else max((now - first).total_seconds(), 0.0)
            pending.add_metric([name], float(count))
            oldest_pending.add_metric([name], age)

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


def _service_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    """Fresh service-wide state families: watched images, webhook backlog."""
    return (
        GaugeMetricFamily("regmon_watched_images", "Tags watched by the config in force."),
        GaugeMetricFamily(
            "regmon_webhook_pending",
            "Webhook deliveries waiting to be sent (pending or sending).",
            labels=["webhook"],
        ),
        GaugeMetricFamily(
            "regmon_webhook_oldest_pending_age_seconds",
            "Age of the oldest delivery waiting to be sent; 0 when none.",
            labels=["webhook"],
        ),
    )


def _render_labels(watch: Watch) -> _WatchLabels:
    ref = watch.image
    image = f'image="{_escape(watch.key)}"'
    available = (
        f'{{{image},registry="{_escape(ref.registry)}",'
        f'repository="{_escape(ref.repository)}",tag="{_escape(ref.tag or "")}"}}'
    )
    interval = None if watch.interval is None else repr(float(watch.interval))
    return _WatchLabels(watch, image, available, interval)


def _escape(value: str) -> str:
    """A label value as the exposition formats (text 0.0.4 and OpenMetrics) quote it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


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


def _epoch_text(moment: datetime | None) -> str | None:
    return None if moment is None else repr(_epoch(moment))


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
