"""End to end: a real Prometheus scrapes a running `regmon run` and evaluates the shipped rules.

regmon watches two tags on the real registry fixture, one pushed and one never
pushed, every second. Prometheus (the Debian binary, on 127.0.0.1) scrapes it
every second and evaluates ``config/prometheus/alerts.yml`` every second. Through
Prometheus's HTTP API: RegmonImageMissing is active for the missing tag and no
alert is active for the present one.

Two variants: the shipped file untouched (``for: 5m``, so the alert is pending),
and a copy with every ``for:`` shortened to 2s (so it reaches firing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from support.images import ImagePusher
from support.paths import ROOT
from support.prometheus import PrometheusServer, require_prometheus_binaries, shorten_for
from support.registry import RegistryServer
from support.service import RegmonProcess
from support.wait import wait_for

ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
SHORT_FOR = "2s"


@dataclass(frozen=True)
class Watched:
    registry: str  # the registry label: host:port
    repository: str
    present: str  # normalized references, as in the image label
    missing: str
    target: str  # regmon's host:port, the scrape target


# --- regmon run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regmon(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    """`regmon run` watching one pushed and one never-pushed tag, every second."""
    repository = f"e2e/prom{uuid4().hex[:10]}"
    with ImagePusher(registry.url) as pusher:
        pusher.push_image(repository, "present", "oci")
    present = f"{registry.host}/{repository}:present"
    missing = f"{registry.host}/{repository}:missing"
    config = {
        "log": {"level": "info"},
        "defaults": {"interval": "1s", "jitter": "0%"},
        "watch": [{"image": present}, {"image": missing}],
    }
    workdir = tmp_path_factory.mktemp("regmon-e2e")
    with RegmonProcess(yaml.safe_dump(config, sort_keys=False), workdir, start=False) as svc:
        svc.start()
        yield Watched(
            registry=registry.host,
            repository=repository,
            present=present,
            missing=missing,
            target=svc.url.removeprefix("http://"),
        )
        svc.stop()  # SIGTERM; asserts a clean exit


# --- Prometheus ---------------------------------------------------------------------------


def prometheus_config(target: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "regmon", "static_configs": [{"targets": [target]}]}],
    }


def alerts_for(prom: PrometheusServer, image: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"].get("image") == image]


def assert_scraped(prom: PrometheusServer, watched: Watched) -> None:
    """up is 1 and regmon_image_available has the two series, 1 and 0."""

    def up() -> list[dict[str, Any]]:
        result = prom.query('up{job="regmon"}')
        return result if [s["value"][1] for s in result] == ["1"] else []

    (series,) = wait_for(up, timeout=15, interval=0.2, message='up{job="regmon"} == 1')
    assert series["metric"]["instance"] == watched.target

    def available() -> dict[str, dict[str, Any]]:
        by_image = {s["metric"]["image"]: s for s in prom.query("regmon_image_available")}
        values = {image: s["value"][1] for image, s in by_image.items()}
        return by_image if values == {watched.present: "1", watched.missing: "0"} else {}

    by_image = wait_for(
        available,
        timeout=15,
        interval=0.2,
        message="regmon_image_available = {present 1, missing 0}",
    )
    for image, tag in ((watched.present, "present"), (watched.missing, "missing")):
        labels = by_image[image]["metric"]
        assert labels == {
            "__name__": "regmon_image_available",
            "image": image,
            "registry": watched.registry,
            "repository": watched.repository,
            "tag": tag,
            "job": "regmon",
            "instance": watched.target,
        }


def wait_for_missing_alert(
    prom: PrometheusServer, watched: Watched, states: set[str]
) -> dict[str, Any]:
    def active() -> dict[str, Any]:
        for alert in alerts_for(prom, watched.missing):
            if alert["labels"]["alertname"] == "RegmonImageMissing" and alert["state"] in states:
                return alert
        return {}

    alert = wait_for(
        active,
        timeout=20,
        interval=0.2,
        message=f"RegmonImageMissing {' or '.join(sorted(states))} for {watched.missing}",
    )
    labels = alert["labels"]
    assert labels["registry"] == watched.registry
    assert labels["repository"] == watched.repository
    assert labels["tag"] == "missing"
    assert labels["severity"] == "critical"
    assert watched.missing in alert["annotations"]["summary"]
    assert watched.registry in alert["annotations"]["description"]
    return alert


def assert_only_the_missing_image_alerts(prom: PrometheusServer, watched: Watched) -> None:
    assert alerts_for(prom, watched.present) == []

    # RegmonDown is legitimately active right after Prometheus starts: its
    # absent(up{job="regmon"}) holds until the first scrape, which Prometheus's
    # discovery manager delays by up to 5 s. It must be gone once regmon is scraped.
    def others() -> list[dict[str, Any]]:
        return [a for a in prom.alerts() if a["labels"].get("image") != watched.missing]

    wait_for(
        lambda: not others(),
        timeout=5,
        interval=0.2,
        message="no alert active but for the missing tag",
    )
    assert alerts_for(prom, watched.present) == []


def rule_durations(prom: PrometheusServer) -> dict[str, float]:
    return {
        rule["name"]: rule["duration"]
        for group in prom.rule_groups()
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_rules_make_the_missing_image_alert_pending(
    regmon: Watched, tmp_path: Path
) -> None:
    require_prometheus_binaries()
    with PrometheusServer(tmp_path, prometheus_config(regmon.target), ALERTS) as prom:
        # The shipped file as is: RegmonImageMissing waits 5 minutes before firing.
        assert rule_durations(prom)["RegmonImageMissing"] == 300
        assert_scraped(prom, regmon)
        alert = wait_for_missing_alert(prom, regmon, {"pending"})
        assert alert["state"] == "pending"
        assert_only_the_missing_image_alerts(prom, regmon)


@pytest.mark.slow
def test_shortened_for_makes_the_missing_image_alert_fire(regmon: Watched, tmp_path: Path) -> None:
    require_prometheus_binaries()
    rules = shorten_for(ALERTS, tmp_path / "alerts-short-for.yml", SHORT_FOR)
    with PrometheusServer(tmp_path / "prometheus", prometheus_config(regmon.target), rules) as prom:
        assert set(rule_durations(prom).values()) == {2}
        assert_scraped(prom, regmon)
        wait_for_missing_alert(prom, regmon, {"firing"})
        assert_only_the_missing_image_alerts(prom, regmon)
