"""monitor.metrics: service-wide instruments and the scrape-time state collector."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import update
from sqlalchemy.engine import Engine
from support.fakes import FakeView
from support.prometheus import promtool
from support.records import prepared

from monitor import __version__
from monitor.config import parse_config
from monitor.domain import CheckResult, Reason, Status
from monitor.ids import new_event_id
from monitor.metrics import METRIC_NAMES, Metrics, exposition
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.reference import parse_reference
from monitor.store import repository
from monitor.store.engine import make_engine
from monitor.store.models import metadata
from monitor.wire import event_to_payload

ALPINE = "docker.io/library/alpine:3.20"
NGINX = "docker.io/library/nginx:1.27"
APP = "ghcr.io/acme/app:prod"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

CONFIG = f"""
webhooks:
  - name: ops
    url: https://user:pass@hooks.example.com/regmon
  - name: idle
    url: https://hooks.example.com/idle
watch:
  - image: alpine:3.20
  - image: nginx:1.27
    interval: 1m
  - image: {APP}
    cron: "*/15 * * * *"
"""

T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)


@pytest.fixture
def view(engine: Engine) -> FakeView:
    return FakeView(config=parse_config(CONFIG), engine=engine)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry, view: FakeView) -> Metrics:
    return Metrics(registry, view)


def present(image: str, digest: str = DIGEST_A, **changes: Any) -> TagState:
    state = TagState(
        image=image,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest=digest,
        first_seen=T0,
        last_checked=T0 + timedelta(minutes=5),
        last_decided=T0 + timedelta(minutes=5),
        last_changed=T0,
    )
    return replace(state, **changes)


def test_build_info_and_watched_images(registry: CollectorRegistry, metrics: Metrics) -> None:
    assert registry.get_sample_value("regmon_build_info", {"version": __version__}) == 1
    assert registry.get_sample_value("regmon_watched_images") == 3


def test_nothing_per_image_before_the_first_check(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    for name in ("regmon_image_available", "regmon_image_status", "regmon_image_digest_info"):
        assert not _samples(registry, name)
    # The schedule is known from the config alone.
    assert registry.get_sample_value("regmon_image_check_interval_seconds", {"image": NGINX}) == 60


def test_available_not_exported_before_the_first_decided_check(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    view.state_map[ALPINE] = TagState(
        image=ALPINE, status=Status.ERROR, reason=Reason.TIMEOUT, last_checked=T0
    )
    assert not _samples(registry, "regmon_image_available")
    assert (
        registry.get_sample_value("regmon_image_status", {"image": ALPINE, "status": "error"}) == 1
    )
    assert registry.get_sample_value(
        "regmon_image_last_check_timestamp_seconds", {"image": ALPINE}
    ) == pytest.approx(T0.timestamp())
    assert (
        registry.get_sample_value("regmon_image_last_decided_timestamp_seconds", {"image": ALPINE})
        is None
    )


def test_available_stays_1_when_the_latest_check_is_an_error(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    labels = {
        "image": ALPINE,
        "registry": "docker.io",
        "repository": "library/alpine",
        "tag": "3.20",
    }
    view.state_map[ALPINE] = present(ALPINE)
    assert registry.get_sample_value("regmon_image_available", labels) == 1
    view.state_map[ALPINE] = present(ALPINE, status=Status.ERROR, reason=Reason.SERVER_ERROR)
    assert registry.get_sample_value("regmon_image_available", labels) == 1
    view.state_map[ALPINE] = present(ALPINE, status=Status.MISSING, decided_status=Status.MISSING)
    assert registry.get_sample_value("regmon_image_available", labels) == 0
    view.state_map[ALPINE] = present(ALPINE, status=Status.DENIED, decided_status=Status.DENIED)
    assert registry.get_sample_value("regmon_image_available", labels) == 0


@pytest.mark.parametrize("current", list(Status))
def test_status_is_one_series_for_the_current_status(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView, current: Status
) -> None:
    """Only the current status is exported (not a 0 series for every other one)."""
    view.state_map[ALPINE] = present(ALPINE, status=current)
    assert [(s.labels, s.value) for s in _samples(registry, "regmon_image_status")] == [
        ({"image": ALPINE, "status": str(current)}, 1.0)
    ]


def test_digest_info_and_timestamps(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    view.state_map[ALPINE] = present(ALPINE, DIGEST_B)
    assert (
        registry.get_sample_value("regmon_image_digest_info", {"image": ALPINE, "digest": DIGEST_B})
        == 1
    )
    assert [s.labels for s in _samples(registry, "regmon_image_digest_info")] == [
        {"image": ALPINE, "digest": DIGEST_B}
    ]
    for name, moment in (
        ("regmon_image_last_check_timestamp_seconds", T0 + timedelta(minutes=5)),
        ("regmon_image_last_decided_timestamp_seconds", T0 + timedelta(minutes=5)),
        ("regmon_image_last_change_timestamp_seconds", T0),
    ):
        assert registry.get_sample_value(name, {"image": ALPINE}) == moment.timestamp()


def test_check_interval_of_interval_and_cron_watches(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    interval = "regmon_image_check_interval_seconds"
    assert registry.get_sample_value(interval, {"image": ALPINE}) == 300  # defaults.interval
    assert registry.get_sample_value(interval, {"image": NGINX}) == 60
    assert registry.get_sample_value(interval, {"image": APP}) == 900
    assert registry.get_sample_value(interval, {"image": APP}) == 900  # from the cache


def test_digest_changes_total_comes_from_the_persisted_state(
    registry: CollectorRegistry, view: FakeView, engine: Engine
) -> None:
    view.state_map[ALPINE] = present(ALPINE, digest_changes=3)
    Metrics(registry, view)
    assert registry.get_sample_value("regmon_image_digest_changes_total", {"image": ALPINE}) == 3
    # A restart is a new registry reading the same state: nothing resets.
    again = CollectorRegistry()
    Metrics(again, view)
    assert again.get_sample_value("regmon_image_digest_changes_total", {"image": ALPINE}) == 3


def test_observe_check_counts_outcomes_and_durations(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    ref = parse_reference(ALPINE)
    metrics.observe_check(
        CheckResult(
            ref,
            Status.PRESENT,
            T0,
            digest=DIGEST_A,
            duration_ms=40,
            ratelimit_limit=100,
            ratelimit_remaining=97,
        ),
        "docker.io",
    )
    metrics.observe_check(
        CheckResult(ref, Status.ERROR, T0, reason=Reason.TIMEOUT, duration_ms=10_000),
        "docker.io",
    )
    checks = "regmon_checks_total"
    assert (
        registry.get_sample_value(
            checks, {"registry": "docker.io", "status": "present", "reason": ""}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            checks, {"registry": "docker.io", "status": "error", "reason": "timeout"}
        )
        == 1
    )
    duration = "regmon_check_duration_seconds"
    assert registry.get_sample_value(f"{duration}_count", {"registry": "docker.io"}) == 2
    assert registry.get_sample_value(f"{duration}_sum", {"registry": "docker.io"}) == (
        pytest.approx(10.04)
    )
    assert (
        registry.get_sample_value(f"{duration}_bucket", {"registry": "docker.io", "le": "0.05"})
        == 1
    )
    assert registry.get_sample_value(
        "regmon_registry_ratelimit_limit", {"registry": "docker.io"}
    ) == (100)
    assert (
        registry.get_sample_value("regmon_registry_ratelimit_remaining", {"registry": "docker.io"})
        == 97
    )


def test_registry_up_follows_the_last_request(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.observe_request("ghcr.io", "HEAD", "200")
    assert registry.get_sample_value("regmon_registry_up", {"registry": "ghcr.io"}) == 1
    metrics.observe_request("ghcr.io", "HEAD", "error")
    assert registry.get_sample_value("regmon_registry_up", {"registry": "ghcr.io"}) == 0
    metrics.observe_request("ghcr.io", "GET", "503")  # an answer, even a bad one
    assert registry.get_sample_value("regmon_registry_up", {"registry": "ghcr.io"}) == 1
    requests = "regmon_registry_requests_total"
    assert (
        registry.get_sample_value(
            requests, {"registry": "ghcr.io", "method": "HEAD", "code": "200"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            requests, {"registry": "ghcr.io", "method": "HEAD", "code": "error"}
        )
        == 1
    )


def test_a_follower_exports_leader_0_and_no_series_another_replica_also_exports(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView, engine: Engine
) -> None:
    """Both replicas scraped: per-image series, the backlog and the registry gauges come
    from the leader alone, so no alert has two series to fire on (issue 14)."""
    view.state_map = {ALPINE: present(ALPINE)}
    record_events(engine, 1, webhooks=["ops"], now=datetime.now(UTC))
    metrics.observe_request("ghcr.io", "HEAD", "200")
    metrics.observe_ratelimit("docker.io", 100, 5)
    assert registry.get_sample_value("regmon_leader") == 1
    assert len(_samples(registry, "regmon_image_available")) == 1
    assert registry.get_sample_value("regmon_webhook_pending", {"webhook": "ops"}) == 1

    view.leader = False
    metrics.forget_registries()  # what the service does when it loses the lead
    names = {sample.name for family in registry.collect() for sample in family.samples}
    assert registry.get_sample_value("regmon_leader") == 0
    assert not {name for name in names if name.startswith("regmon_image_")}, names
    for gone in (
        "regmon_webhook_pending",
        "regmon_webhook_oldest_pending_age_seconds",
        "regmon_registry_up",
        "regmon_registry_ratelimit_limit",
        "regmon_registry_ratelimit_remaining",
    ):
        assert gone not in names, names
    assert registry.get_sample_value("regmon_watched_images") == 3
    assert registry.get_sample_value("regmon_build_info", {"version": __version__}) == 1


def test_observe_delivery(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.observe_delivery("ops", "retry")
    metrics.observe_delivery("ops", "delivered")
    metrics.observe_delivery("ops", "delivered")
    total = "regmon_webhook_deliveries_total"
    assert registry.get_sample_value(total, {"webhook": "ops", "outcome": "delivered"}) == 2
    assert registry.get_sample_value(total, {"webhook": "ops", "outcome": "retry"}) == 1
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_delivery("ops", "exploded")


def record_events(engine: Engine, count: int, *, webhooks: Sequence[str], now: datetime) -> None:
    evaluations = [
        Evaluation(
            state=present(ALPINE),
            events=(
                Event(
                    id=new_event_id(),
                    type=EventType.TAG_CHANGED,
                    occurred_at=now,
                    image=ALPINE,
                    previous_status=Status.PRESENT,
                    previous_digest=DIGEST_A,
                    current_status=Status.PRESENT,
                    current_digest=DIGEST_B,
                    checked_at=now,
                ),
            ),
        )
        for _ in range(count)
    ]
    repository.record_evaluations(
        engine, prepared(evaluations, event_to_payload, lambda _event: webhooks), now=now
    )


def test_webhook_backlog_is_read_from_the_outbox(
    registry: CollectorRegistry, metrics: Metrics, engine: Engine
) -> None:
    now = datetime.now(UTC)
    record_events(engine, 2, webhooks=["ops"], now=now - timedelta(minutes=10))
    record_events(engine, 1, webhooks=["ops"], now=now - timedelta(minutes=1))
    deliveries = metadata.tables["deliveries"]
    with engine.begin() as conn:  # the oldest one went out: it no longer counts
        first = conn.execute(deliveries.select().order_by(deliveries.c.id)).first()
        assert first is not None
        conn.execute(
            update(deliveries).where(deliveries.c.id == first.id).values(status="delivered")
        )
        second = first.id + 1
        conn.execute(update(deliveries).where(deliveries.c.id == second).values(status="sending"))
    assert registry.get_sample_value("regmon_webhook_pending", {"webhook": "ops"}) == 2
    age = registry.get_sample_value("regmon_webhook_oldest_pending_age_seconds", {"webhook": "ops"})
    assert age == pytest.approx(600, abs=30)
    # A configured webhook with nothing waiting is exported as 0.
    assert registry.get_sample_value("regmon_webhook_pending", {"webhook": "idle"}) == 0
    assert (
        registry.get_sample_value("regmon_webhook_oldest_pending_age_seconds", {"webhook": "idle"})
        == 0
    )


def test_the_backlog_is_one_grouped_query(
    registry: CollectorRegistry, metrics: Metrics, engine: Engine
) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        generate_latest(registry)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if "deliveries" in s]
    assert len(selects) == 1
    assert "GROUP BY" in selects[0]


def test_a_failing_database_never_fails_the_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    try:
        view = FakeView(config=parse_config(CONFIG), engine=engine)
        view.state_map[ALPINE] = present(ALPINE)
        registry = CollectorRegistry()
        Metrics(registry, view)
        with caplog.at_level(logging.WARNING, logger="monitor.metrics"):
            text = generate_latest(registry).decode()
    finally:
        engine.dispose()
    assert "regmon_image_available{" in text
    assert "regmon_webhook_pending{" not in text
    assert "webhook backlog" in caplog.text


def test_exposition_labels_and_names(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView, engine: Engine
) -> None:
    view.state_map[ALPINE] = present(ALPINE, digest_changes=1)
    view.state_map[NGINX] = present(
        NGINX, status=Status.ERROR, reason=Reason.UNREACHABLE, detail="connection refused"
    )
    record_events(engine, 1, webhooks=["ops"], now=datetime.now(UTC))
    metrics.observe_check(CheckResult(parse_reference(ALPINE), Status.PRESENT, T0), "docker.io")
    metrics.observe_request("docker.io", "HEAD", "200")
    metrics.observe_ratelimit("docker.io", 100, 50)
    metrics.observe_delivery("ops", "delivered")
    metrics.observe_registries({"docker.io": False}, replace=True)

    text = generate_latest(registry).decode()
    forbidden = {"namespace", "pod", "job", "instance"}
    sample_names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sample_names.add(sample.name)
            assert not forbidden & set(sample.labels), sample
            if sample.name != "regmon_image_digest_info":
                assert "digest" not in sample.labels, sample
                assert not any(v.startswith("sha256:") for v in sample.labels.values()), sample
            assert not any("refused" in v for v in sample.labels.values()), sample
    for name in METRIC_NAMES:
        assert name in sample_names or f"{name}_bucket" in sample_names, name
    assert "pass" not in text  # the webhook URL's credentials never reach a label


def test_no_created_series(registry: CollectorRegistry, metrics: Metrics, view: FakeView) -> None:
    """SPEC §7: prometheus_client's ``_created`` series are turned off, for every type."""
    view.state_map[ALPINE] = present(ALPINE, digest_changes=1)
    metrics.observe_check(CheckResult(parse_reference(ALPINE), Status.PRESENT, T0), "docker.io")
    metrics.observe_request("docker.io", "HEAD", "200")
    metrics.observe_delivery("ops", "delivered")
    text = generate_latest(registry).decode()
    assert "regmon_checks_total{" in text
    assert "regmon_check_duration_seconds_bucket{" in text
    assert "_created" not in text


def test_registering_twice_on_one_registry_is_refused(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry, view)


def _samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    return [
        sample for family in registry.collect() for sample in family.samples if sample.name == name
    ]


# --------------------------------------------------------------------------- the exposition

OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# Every per-image family for a small state: ALPINE present (overwritten twice),
# NGINX present then an error, APP (cron every 15 minutes) never checked; a higher
# version of ALPINE exists.
GOLDEN_IMAGE_FAMILIES = """\
# HELP regmon_image_available 1 if the tag was present at the last decided check, 0 if missing or denied.
# TYPE regmon_image_available gauge
regmon_image_available{image="docker.io/library/alpine:3.20",registry="docker.io",repository="library/alpine",tag="3.20"} 1
regmon_image_available{image="docker.io/library/nginx:1.27",registry="docker.io",repository="library/nginx",tag="1.27"} 0
# HELP regmon_image_status 1 for the status of the last check (one series per image: the current status).
# TYPE regmon_image_status gauge
regmon_image_status{image="docker.io/library/alpine:3.20",status="present"} 1
regmon_image_status{image="docker.io/library/nginx:1.27",status="error"} 1
# HELP regmon_image_digest_info Always 1; the last digest seen while present.
# TYPE regmon_image_digest_info gauge
regmon_image_digest_info{image="docker.io/library/alpine:3.20",digest="sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"} 1
# HELP regmon_image_last_check_timestamp_seconds Unix time of the last check.
# TYPE regmon_image_last_check_timestamp_seconds gauge
regmon_image_last_check_timestamp_seconds{image="docker.io/library/alpine:3.20"} 1795758320.0
regmon_image_last_check_timestamp_seconds{image="docker.io/library/nginx:1.27"} 1795758380.25
# HELP regmon_image_last_decided_timestamp_seconds Unix time of the last check that was not an error.
# TYPE regmon_image_last_decided_timestamp_seconds gauge
regmon_image_last_decided_timestamp_seconds{image="docker.io/library/alpine:3.20"} 1795758320.0
regmon_image_last_decided_timestamp_seconds{image="docker.io/library/nginx:1.27"} 1795758320.0
# HELP regmon_image_last_change_timestamp_seconds Unix time of the last change of presence or digest.
# TYPE regmon_image_last_change_timestamp_seconds gauge
regmon_image_last_change_timestamp_seconds{image="docker.io/library/alpine:3.20"} 1795758020.0
regmon_image_last_change_timestamp_seconds{image="docker.io/library/nginx:1.27"} 1795758020.0
# HELP regmon_image_check_interval_seconds Seconds between checks (for a cron watch: between its next two fire times).
# TYPE regmon_image_check_interval_seconds gauge
regmon_image_check_interval_seconds{image="docker.io/library/alpine:3.20"} 300.0
regmon_image_check_interval_seconds{image="docker.io/library/nginx:1.27"} 60.0
regmon_image_check_interval_seconds{image="ghcr.io/acme/app:prod"} 900.0
# HELP regmon_image_digest_changes_total Times the tag's digest changed (overwritten upstream); survives restarts.
# TYPE regmon_image_digest_changes_total counter
regmon_image_digest_changes_total{image="docker.io/library/alpine:3.20"} 2
regmon_image_digest_changes_total{image="docker.io/library/nginx:1.27"} 0
# HELP regmon_image_newer_version_info 1 while a higher version of the tag exists (newer: semver); version is the highest.
# TYPE regmon_image_newer_version_info gauge
regmon_image_newer_version_info{image="docker.io/library/alpine:3.20",version="3.21"} 1
"""  # noqa: E501


@pytest.fixture
def small_state(view: FakeView) -> FakeView:
    view.state_map[ALPINE] = present(ALPINE, DIGEST_B, digest_changes=2, newer_version="3.21")
    view.state_map[NGINX] = present(
        NGINX,
        status=Status.ERROR,
        decided_status=Status.MISSING,
        digest=None,
        reason=Reason.TIMEOUT,
        last_checked=T0 + timedelta(minutes=6, microseconds=250_000),
    )
    return view


def _image_part(text: str) -> str:
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if line.startswith(("regmon_image_", "# HELP regmon_image_", "# TYPE regmon_image_"))
    )


def test_golden_exposition_of_the_image_families(
    registry: CollectorRegistry, metrics: Metrics, small_state: FakeView
) -> None:
    body, content_type = exposition(registry, "")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert _image_part(body.decode()) == GOLDEN_IMAGE_FAMILIES


def test_golden_openmetrics_names_counter_families_without_total(
    registry: CollectorRegistry, metrics: Metrics, small_state: FakeView
) -> None:
    body, content_type = exposition(registry, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("\n# EOF\n")
    assert text.count("# EOF") == 1
    assert _image_part(text) == GOLDEN_IMAGE_FAMILIES.replace(
        "# HELP regmon_image_digest_changes_total", "# HELP regmon_image_digest_changes"
    ).replace("# TYPE regmon_image_digest_changes_total", "# TYPE regmon_image_digest_changes")


def test_at_most_8_series_per_watch(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    for key in (ALPINE, NGINX, APP):
        view.state_map[key] = present(key, status=Status.ERROR, digest_changes=1)
    text = exposition(registry, "")[0].decode()
    per_image: dict[str, list[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "image" in sample.labels:
                per_image.setdefault(sample.labels["image"], []).append(sample.name)
    assert per_image == {
        key: [
            "regmon_image_available",
            "regmon_image_status",
            "regmon_image_digest_info",
            "regmon_image_last_check_timestamp_seconds",
            "regmon_image_last_decided_timestamp_seconds",
            "regmon_image_last_change_timestamp_seconds",
            "regmon_image_check_interval_seconds",
            "regmon_image_digest_changes_total",
        ]
        for key in (ALPINE, NGINX, APP)
    }


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
def test_the_library_sees_the_series_the_exposition_writes(
    registry: CollectorRegistry, metrics: Metrics, small_state: FakeView, accept: str
) -> None:
    """registry.collect() (get_sample_value, generate_latest) and /metrics agree."""
    metrics.observe_check(CheckResult(parse_reference(ALPINE), Status.PRESENT, T0), "docker.io")
    metrics.observe_delivery("ops", "delivered")
    ours = exposition(registry, accept)[0].decode()
    if accept:
        library = openmetrics_latest(registry).decode()
        parse = openmetrics_families
    else:
        library = generate_latest(registry).decode()
        parse = text_string_to_metric_families
    assert _sample_set(parse(ours)) == _sample_set(parse(library))
    assert len(_sample_set(parse(ours))) == 44


def test_exposition_parses_and_passes_promtool_check_metrics(
    registry: CollectorRegistry, metrics: Metrics, small_state: FakeView
) -> None:
    metrics.observe_check(CheckResult(parse_reference(ALPINE), Status.PRESENT, T0), "docker.io")
    metrics.observe_request("docker.io", "HEAD", "200")
    body = exposition(registry, "")[0]
    assert list(text_string_to_metric_families(body.decode()))
    assert list(openmetrics_families(exposition(registry, OPENMETRICS)[0].decode()))
    done = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_label_values_are_escaped(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    odd = 'sha256:"quoted" back\\slash\nnewline'
    view.state_map[ALPINE] = present(ALPINE, odd)
    text = exposition(registry, "")[0].decode()
    assert 'digest="sha256:\\"quoted\\" back\\\\slash\\nnewline"' in text
    for parse, body in (
        (text_string_to_metric_families, text),
        (openmetrics_families, exposition(registry, OPENMETRICS)[0].decode()),
    ):
        digests = [
            sample.labels["digest"]
            for family in parse(body)
            for sample in family.samples
            if sample.name == "regmon_image_digest_info"
        ]
        assert digests == [odd]


def test_a_reload_drops_the_series_of_removed_watches(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    view.state_map[ALPINE] = present(ALPINE)
    view.state_map[NGINX] = present(NGINX)
    assert registry.get_sample_value("regmon_image_check_interval_seconds", {"image": NGINX}) == 60
    view.config = parse_config("watch:\n  - image: alpine:3.20\n    interval: 2m\n")
    view.state_map.pop(NGINX)
    text = exposition(registry, "")[0].decode()
    assert NGINX not in text
    assert registry.get_sample_value("regmon_image_check_interval_seconds", {"image": ALPINE}) == (
        120
    )


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
def test_no_created_series_in_the_exposition(
    registry: CollectorRegistry, metrics: Metrics, small_state: FakeView, accept: str
) -> None:
    metrics.observe_check(CheckResult(parse_reference(ALPINE), Status.PRESENT, T0), "docker.io")
    metrics.observe_request("docker.io", "HEAD", "200")
    metrics.observe_delivery("ops", "delivered")
    text = exposition(registry, accept)[0].decode()
    assert "regmon_check_duration_seconds_bucket{" in text
    assert "regmon_image_digest_changes_total{" in text
    assert "_created" not in text


def _sample_set(families: Iterable[Metric]) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (sample.name, frozenset(sample.labels.items()), sample.value)
        for family in families
        for sample in family.samples
    }


def test_every_scrape_exports_the_state_of_that_moment(
    registry: CollectorRegistry, metrics: Metrics, view: FakeView
) -> None:
    """Text kept between scrapes (labels, timestamps) never outlives its state or watch."""
    name = "regmon_image_last_check_timestamp_seconds"
    view.state_map[ALPINE] = present(ALPINE)
    assert registry.get_sample_value(name, {"image": ALPINE}) == T0.timestamp() + 300
    view.state_map[ALPINE] = present(ALPINE, last_checked=T0 + timedelta(minutes=10))
    assert registry.get_sample_value(name, {"image": ALPINE}) == T0.timestamp() + 600
    # An equal state in a new object, as the service stores after each check.
    view.state_map[ALPINE] = present(ALPINE, last_checked=T0 + timedelta(minutes=10))
    assert registry.get_sample_value(name, {"image": ALPINE}) == T0.timestamp() + 600
    view.config = parse_config("watch:\n  - image: alpine:3.21\n")
    assert registry.get_sample_value(name, {"image": ALPINE}) is None
    assert registry.get_sample_value(
        "regmon_image_check_interval_seconds", {"image": "docker.io/library/alpine:3.21"}
    ) == (300)
