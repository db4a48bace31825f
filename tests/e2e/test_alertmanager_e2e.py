"""End to end: one registry outage is one Alertmanager notification, and then its resolution.

A real `regmon run` watches five tags of one registry (the real CNCF registry
on loopback); a real Prometheus scrapes it and evaluates the shipped
``config/prometheus/alerts.yml``; a real Alertmanager with the shipped
``config/alertmanager/alertmanager.yml`` (routing, grouping, inhibitions) sends
its webhooks to a receiver that keeps every notification. The registry is then
stopped, and started again.

The clock is scaled by 1/30, stated once here (SCALE): a watch interval of 2 s
stands for 1 m, and every duration of the shipped files is multiplied by
SCALE programmatically (``for: 5m`` is 10 s, the 70 m hold window 140 s,
group_wait 30 s is 1 s, group_interval 5 m is 10 s, Prometheus's alert resend
delay 1 m is 2 s), so the test runs the shipped logic, not a copy of it.
Prometheus scrapes and evaluates every second (15 s would be 0.5 s: a coarser
clock than the scaled one, so harder on the rules, not easier).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from support.alertmanager import AlertmanagerServer, AlertReceiver
from support.faults import free_port, status_server
from support.images import ImagePusher
from support.paths import ROOT
from support.prometheus import (
    PrometheusServer,
    require_prometheus_binaries,
    scale_duration,
    scale_durations,
    shorten_for,
)
from support.registry import RegistryServer
from support.service import RegmonProcess
from support.wait import wait_for

ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
ALERTMANAGER = ROOT / "config" / "alertmanager" / "alertmanager.yml"
SCALE = 1 / 30
INTERVAL = scale_duration("1m", SCALE)  # the SPEC's example interval, on the scaled clock
TAGS = [f"1.{i}" for i in range(5)]


def alertmanager_config(receiver_url: str) -> dict[str, Any]:
    """The shipped config with its durations scaled and its one webhook pointed at us."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    route = config["route"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        route[key] = scale_duration(route[key], SCALE)
    (receiver,) = config["receivers"]
    (webhook,) = receiver["webhook_configs"]
    webhook["url"] = receiver_url
    return config


def prometheus_config(regmon: str | list[str], alertmanager: str) -> dict[str, Any]:
    targets = [regmon] if isinstance(regmon, str) else regmon
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "regmon", "static_configs": [{"targets": targets}]}],
    }


def summary(notification: dict[str, Any]) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    alerts = sorted((a["labels"]["alertname"], a["status"]) for a in notification["alerts"])
    return notification["status"], notification["groupLabels"], alerts


@pytest.mark.slow
def test_a_registry_outage_is_one_notification_then_its_resolution(
    registry_factory: Any, tmp_path: Path
) -> None:
    require_prometheus_binaries()
    registry: RegistryServer = registry_factory()
    repository = f"e2e/am{uuid4().hex[:10]}"
    with ImagePusher(registry.url) as pusher:
        for tag in TAGS:
            pusher.push_image(repository, tag, "oci")
    images = [f"{registry.host}/{repository}:{tag}" for tag in TAGS]
    config = {
        "log": {"level": "info"},
        "defaults": {"interval": INTERVAL},  # the default jitter, 10%
        "watch": [{"image": image} for image in images],
    }
    rules = scale_durations(ALERTS, tmp_path / "alerts-scaled.yml", SCALE)
    with (
        RegmonProcess(yaml.safe_dump(config, sort_keys=False), tmp_path / "regmon") as regmon,
        AlertReceiver() as receiver,
        AlertmanagerServer(tmp_path / "am", alertmanager_config(receiver.url)) as am,
        PrometheusServer(
            tmp_path / "prometheus",
            prometheus_config(regmon.url.removeprefix("http://"), am.host),
            rules,
            extra_args=(f"--rules.alert.resend-delay={scale_duration('1m', SCALE)}",),
        ) as prom,
    ):
        # Healthy: every tag is available and nothing is active (RegmonDown's
        # absent() holds until the first scrape, which Prometheus delays by up
        # to 5 s).
        def healthy() -> bool:
            values = {
                s["metric"]["image"]: s["value"][1] for s in prom.query("regmon_image_available")
            }
            return values == dict.fromkeys(images, "1") and not prom.alerts()

        wait_for(healthy, timeout=30, interval=0.2, message="5 tags available, no alert active")
        assert prom.query('{__name__=~"regmon_.+_created"}') == []  # SPEC §7

        # The outage.
        registry.stop()
        outage = time.monotonic()
        wait_for(receiver.notifications, timeout=45, interval=0.2, message="a notification")
        fired_after = time.monotonic() - outage
        (first,) = receiver.notifications()
        assert summary(first) == (
            "firing",
            {"alertname": "RegmonChecksFailing", "registry": registry.host},
            [("RegmonChecksFailing", "firing")],
        )

        # Hold the outage until every image has had no answer for longer than
        # RegmonChecksStale needs (4 intervals, then its for:), with margin:
        # without the registry-level alert in front of it, it would fire now.
        stale_by = 4 * 2 + 10 + 4  # seconds, on the scaled clock

        def stale_long_enough() -> bool:
            (sample,) = prom.query("min(time() - regmon_image_last_decided_timestamp_seconds)")
            return float(sample["value"][1]) > stale_by

        wait_for(stale_long_enough, timeout=30, interval=0.2, message="every image stale")
        active = {a["labels"]["alertname"]: a["state"] for a in prom.alerts()}
        assert active == {"RegmonChecksFailing": "firing"}, prom.alerts()
        assert len(receiver.notifications()) == 1, receiver.notifications()

        # The registry comes back: one resolution for the same group.
        registry.start()
        wait_for(
            lambda: len(receiver.notifications()) >= 2,
            timeout=45,
            interval=0.2,
            message="the resolution",
        )
        assert summary(receiver.notifications()[1]) == (
            "resolved",
            {"alertname": "RegmonChecksFailing", "registry": registry.host},
            [("RegmonChecksFailing", "resolved")],
        )
        assert receiver.notifications()[1]["groupKey"] == first["groupKey"]
        wait_for(lambda: not prom.alerts(), timeout=20, interval=0.2, message="nothing active")

        # Nothing more: a late per-image alert would reach the receiver at its
        # group's next flush, at most one group_interval (10 s) away.
        quiet_until = time.monotonic() + 1.5 * 10
        wait_for(
            lambda: time.monotonic() > quiet_until or len(receiver.notifications()) > 2,
            timeout=20,
            interval=0.2,
        )
        assert len(receiver.notifications()) == 2, [summary(n) for n in receiver.notifications()]
    # ~2.5 intervals without an answer, then for: 10 s, on the scaled clock.
    assert fired_after < 30, fired_after


def test_one_replica_down_holds_nothing_back_and_no_replica_answering_holds_the_rest(
    tmp_path: Path,
) -> None:
    """Two replicas scraped (SPEC §11): the shipped rules on a real Prometheus feed the
    shipped routes and inhibitions on a real Alertmanager. One replica down is its own
    alert and the other replica's alerts still reach the receiver; RegmonDown, which
    holds every other regmon alert back, fires only when no replica answers.

    The replicas are static /metrics pages (what a leader with one missing tag exports)
    and a port nothing listens on; every ``for:`` is 2 s, the lookbacks stay the shipped
    ones, so the missing tag's alert outlives the replica that exported it."""
    require_prometheus_binaries()
    image = {"image": "registry:5000/shop/api:1.0", "registry": "registry:5000"}
    image |= {"repository": "shop/api", "tag": "1.0"}
    series = ",".join(f'{key}="{value}"' for key, value in image.items())
    page = f"regmon_leader 1\nregmon_image_available{{{series}}} 0\n".encode()
    rules = shorten_for(ALERTS, tmp_path / "alerts-short.yml", "2s")
    down = f"127.0.0.1:{free_port()}"  # the replica that is down: nothing listens
    with (
        status_server(200, {"Content-Type": "text/plain; version=0.0.4"}, page) as leader,
        AlertReceiver() as receiver,
        AlertmanagerServer(tmp_path / "am", alertmanager_config(receiver.url)) as am,
        PrometheusServer(
            tmp_path / "prometheus",
            prometheus_config([leader.host, down], am.host),
            rules,
            extra_args=(f"--rules.alert.resend-delay={scale_duration('1m', SCALE)}",),
        ) as prom,
    ):

        def held(expected: dict[str, str]) -> bool:
            return {a["labels"]["alertname"]: a["status"]["state"] for a in am.alerts()} == (
                expected
            )

        def firing(name: str) -> list[dict[str, Any]]:
            """The notifications of group ``name`` that said firing (RegmonDown's absent()
            fires once right after Prometheus starts, before its first scrape)."""
            return [
                n
                for n in receiver.notifications()
                if n["groupLabels"]["alertname"] == name and n["status"] == "firing"
            ]

        both = {"RegmonImageMissing": "active", "RegmonReplicaDown": "active"}
        wait_for(lambda: held(both), timeout=30, interval=0.2, message=prom.read_log())
        wait_for(
            lambda: all(firing(name) for name in both),
            timeout=15,
            interval=0.2,
            message=am.read_log(),
        )
        active = {(a["labels"]["alertname"], a["labels"].get("instance")) for a in prom.alerts()}
        assert active == {("RegmonImageMissing", None), ("RegmonReplicaDown", down)}

        # The last replica goes too: nothing watches, RegmonDown holds the rest back.
        answering = leader.host
        leader.close()
        held_back = {
            "RegmonImageMissing": "suppressed",
            "RegmonReplicaDown": "suppressed",
            "RegmonDown": "active",
        }
        wait_for(lambda: held(held_back), timeout=30, interval=0.2, message=am.read_log())
        instances = sorted([answering, down])

        def both_down() -> bool:
            return any(
                sorted(
                    a["labels"].get("instance", "") for a in n["alerts"] if a["status"] == "firing"
                )
                == instances
                for n in firing("RegmonDown")
            )

        wait_for(both_down, timeout=15, interval=0.2, message=am.read_log())
