"""The state collector: per-image families and the webhook backlog, read on each scrape."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.domain import Status
from monitor.metrics.exposition import _escape, _FamilySpec, _RenderedFamily
from monitor.records import DeliveryStatus, TagState

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Watch
    from monitor.view import ServiceView

__all__: list[str] = []

# The package's logger: what a scrape says is said by monitor.metrics.
log = logging.getLogger("monitor.metrics")

_PENDING_STATUSES: Final = tuple(status.value for status in DeliveryStatus.waiting())
_AVAILABLE_TEXT: Final = {Status.PRESENT: "1", Status.MISSING: "0", Status.DENIED: "0"}

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
_NEWER_FAMILY: Final = _FamilySpec(
    "regmon_image_newer_version_info",
    "gauge",
    "1 while a higher version of the tag exists (newer: semver); version is the highest.",
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
    _NEWER_FAMILY,
)


@dataclass(frozen=True, slots=True)
class _WatchLabels:
    """The label text of one ``Watch``, rendered once and reused while the watch stands."""

    watch: Watch
    available: str  # {image="…",registry="…",repository="…",tag="…"}
    image_end: int  # available[1:image_end] is image="…" (escaped, no braces)
    interval: str | None  # the interval value of a watch with ``interval``

    @property
    def image(self) -> str:
        # A slice of ``available`` rather than a string of its own kept per watch
        # (~100 B each, 5 MB at 50,000); a scrape takes it once per watch.
        return self.available[1 : self.image_end]


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
            _repository_family(),
        ]

    def collect(self) -> Iterable[Metric]:
        watches = self._view.watches()
        now = datetime.now(UTC)
        # Per-image series and the backlog come from the leader only: with every replica
        # scraped, each alert then has one series to fire on, not one per replica.
        leading = self._view.is_leader()
        if leading:
            labels = self._watch_labels(watches)
            yield from self._image_families(labels, self._view.states(), now)
        watched, pending, oldest_pending = _service_families()
        watched.add_metric([], float(len(watches)))
        yield watched
        if leading:
            self._add_backlog(pending, oldest_pending, now)
            yield pending
            yield oldest_pending
            repositories = _repository_family()
            for repository in self._view.repositories():
                repositories.add_metric([repository.key], float(len(repository.tags)))
            yield repositories

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
        images: list[str] = []  # entries' image="…" text, for this scrape only
        for entry in labels:
            state = states.get(entry.watch.key)
            if state is not None:
                entries.append(entry)
                found.append(state)
                images.append(entry.image)
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
                    f'regmon_image_status{{{image},status="{s.status.value}"}} 1\n'
                    for image, s in zip(images, found, strict=True)
                    if s.status is not None
                ]
            ),
        )
        yield _RenderedFamily(
            _DIGEST_FAMILY,
            "".join(
                [
                    f'regmon_image_digest_info{{{image},digest="{_escape(s.digest)}"}} 1\n'
                    for image, s in zip(images, found, strict=True)
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
                        f"{name}{{{image}}} {value}\n"
                        for image, t in zip(images, times, strict=True)
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
                    f"regmon_image_digest_changes_total{{{image}}} {s.digest_changes:d}\n"
                    for image, s in zip(images, found, strict=True)
                ]
            ),
        )
        yield _RenderedFamily(
            _NEWER_FAMILY,
            "".join(
                [
                    f"regmon_image_newer_version_info{{{image},"
                    f'version="{_escape(s.newer_version)}"}} 1\n'
                    for image, s in zip(images, found, strict=True)
                    if s.newer_version
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
                # A decided check sets last_checked and last_decided to the same moment
                # (and last_changed too, at a change): one string for equal moments.
                checked = _epoch_text(state.last_checked)
                decided = (
                    checked
                    if state.last_decided == state.last_checked
                    else _epoch_text(state.last_decided)
                )
                changed = (
                    checked
                    if state.last_changed == state.last_checked
                    else decided
                    if state.last_changed == state.last_decided
                    else _epoch_text(state.last_changed)
                )
                cached = (state, checked, decided, changed)
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


def _repository_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "regmon_repository_tags",
        "Tags of a repository watch selected by its last listing (each one a watched tag).",
        labels=["repository"],
    )


def _render_labels(watch: Watch) -> _WatchLabels:
    ref = watch.image
    image = f'image="{_escape(watch.key)}"'
    available = (
        f'{{{image},registry="{_escape(ref.registry)}",'
        f'repository="{_escape(ref.repository)}",tag="{_escape(ref.tag or "")}"}}'
    )
    interval = None if watch.interval is None else repr(float(watch.interval))
    return _WatchLabels(watch, available, 1 + len(image), interval)


def _read_backlog(engine: Engine) -> dict[str, tuple[int, datetime | None]]:
    """``{webhook: (waiting deliveries, oldest created_at)}`` in one grouped query."""
    from sqlalchemy import func, select

    from monitor.store.models import deliveries

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
