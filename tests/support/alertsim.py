"""Write ``promtool test rules`` cases from a simulated regmon exporter, one set per interval.

    python tests/support/alertsim.py config/prometheus/alerts_interval_test.yml

For each watch interval (1m, 5m, 1h) and scenario (registry outage, one
missing image, one image whose checks fail, one flaky check) this simulates
what ``regmon run`` exports, scrape by scrape: every image is checked once per
interval with APScheduler's jitter (each gap is the interval plus 0-10%), the
images of a registry are spread over a whole interval (the worst case for the
rules), ``regmon_checks_total`` counts each check, the last-check and
last-decided timestamps advance with the checks, ``regmon_image_available``
keeps its last decided value through errors, and ``regmon_registry_up`` follows
the last request. The expectations do not restate the rules: they count how
often each alert fired over the whole run (``changes()`` of its firing series)
and check that no per-image alert fires without the registry alert above it.

The generated file is committed; tests/project/test_alert_intervals.py regenerates it,
asserts it is unchanged and runs promtool on it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["INTERVALS", "render"]

INTERVALS = {"1m": 60, "5m": 300, "1h": 3600}
EVALUATION_INTERVAL = 15  # seconds; Prometheus's and the compose stack's default
JITTER = 0.10  # the config default
CHECK_SECONDS = 0.7  # an erroring check: three attempts with 0.2 s and 0.5 s pauses
TARGET = {"job": "regmon", "instance": "regmon:9725"}
REGISTRY = "registry:5000"
OTHER = "ghcr.io"
SOLO = "solo.example:5000"  # a registry with one image: one flaky check is most of its checks

Outcome = Callable[[str, float], str]  # (image, check time) -> present | missing | error


@dataclass
class Image:
    registry: str
    repository: str
    tag: str
    checks: list[tuple[float, str]] = field(default_factory=list)  # (time, outcome)

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


def _labels(**labels: str) -> str:
    merged = {**labels, **TARGET}
    return "{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def _encode(values: list[float | None]) -> str:
    """promtool's expanding notation: a run of one value as ``vxN`` (N+1 samples), gaps ``_``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        value = values[i]
        if value is None:
            out.extend(["_"] * (j - i + 1))
        else:
            token = f"{value:.1f}".removesuffix(".0")
            out.append(token if j == i else f"{token}x{j - i}")
        i = j + 1
    return " ".join(out)


class Simulation:
    def __init__(self, interval: int, duration: float, seed: int) -> None:
        self.interval = interval
        self.duration = duration
        self.rng = random.Random(seed)
        self.step = 15 if interval < 3600 else 60  # scrape interval
        self.images: list[Image] = []

    def watch(self, registry: str, repository: str, tag: str) -> Image:
        image = Image(registry, repository, tag)
        self.images.append(image)
        return image

    def run(self, outcome: Outcome, forced_gaps: dict[str, float] | None = None) -> None:
        """Check every image from its phase on; ``forced_gaps`` pins an image's every gap."""
        for image in self.images:
            # regmon has been running: each image was last checked (present)
            # up to one interval before the simulation starts.
            t = -self.rng.uniform(0, self.interval)
            image.checks.append((t, "present"))
            while True:
                gap = (forced_gaps or {}).get(image.ref)
                t += gap if gap is not None else self.interval * (1 + self.rng.uniform(0, JITTER))
                if t > self.duration:
                    break
                image.checks.append((t, outcome(image.ref, t)))

    @property
    def scrapes(self) -> list[float]:
        return [i * self.step for i in range(int(self.duration // self.step) + 1)]

    def series(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        scrapes = self.scrapes

        def seen(check: tuple[float, str], at: float) -> bool:
            duration = CHECK_SECONDS if check[1] == "error" else 0.05
            return check[0] + duration <= at

        by_registry: dict[str, list[Image]] = {}
        for image in self.images:
            by_registry.setdefault(image.registry, []).append(image)
            available, last_check, last_decided = [], [], []
            for s in scrapes:
                done = [c for c in image.checks if seen(c, s)]
                decided = [c for c in done if c[1] != "error"]
                available.append(1.0 if decided[-1][1] == "present" else 0.0)
                last_check.append(float(round(done[-1][0])))
                last_decided.append(float(round(decided[-1][0])))
            ref = image.ref
            out += [
                {
                    "series": "regmon_image_available"
                    + _labels(
                        image=ref,
                        registry=image.registry,
                        repository=image.repository,
                        tag=image.tag,
                    ),
                    "values": _encode(available),
                },
                {
                    "series": "regmon_image_last_check_timestamp_seconds" + _labels(image=ref),
                    "values": _encode(last_check),
                },
                {
                    "series": "regmon_image_last_decided_timestamp_seconds" + _labels(image=ref),
                    "values": _encode(last_decided),
                },
                {
                    "series": "regmon_image_check_interval_seconds" + _labels(image=ref),
                    "values": _encode([float(self.interval)] * len(scrapes)),
                },
                {
                    "series": "regmon_image_digest_changes_total" + _labels(image=ref),
                    "values": _encode([0.0] * len(scrapes)),
                },
            ]
        for registry, images in by_registry.items():
            # Counters start with regmon (at 0 s); a labelled child appears at
            # its first increment, as prometheus_client exports it.
            checks = sorted(c for image in images for c in image.checks[1:])
            for status in ("present", "missing", "error"):
                counts: list[float | None] = []
                for s in scrapes:
                    n = sum(1 for c in checks if c[1] == status and seen(c, s))
                    counts.append(float(n) if n or (counts and counts[-1] is not None) else None)
                if any(v is not None for v in counts):
                    extra = {"reason": "unreachable"} if status == "error" else {}
                    out.append(
                        {
                            "series": "regmon_checks_total"
                            + _labels(registry=registry, status=status, **extra),
                            "values": _encode(counts),
                        }
                    )
            up: list[float] = []
            for s in scrapes:
                done = [c for c in checks if seen(c, s)]
                up.append(0.0 if done and done[-1][1] == "error" else 1.0)
            out.append(
                {"series": "regmon_registry_up" + _labels(registry=registry), "values": _encode(up)}
            )
        out.append(
            {
                "series": 'up{job="regmon",instance="regmon:9725"}',
                "values": _encode([1.0] * len(scrapes)),
            }
        )
        return out


# --- expectations ---------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


def _firing(alertname: str, selector: str = "") -> str:
    extra = f",{selector}" if selector else ""
    return f'ALERTS{{alertname="{alertname}",alertstate="firing"{extra}}}'


def _episodes(alertname: str, selector: str, duration: float) -> dict[str, Any]:
    """``changes()`` of the alert's firing state over the run: 2 = fired once, then resolved."""
    firing = f"max({_firing(alertname, selector)}) or vector(0)"
    return {"expr": f"changes(({firing})[{_minutes(duration)}:15s])"}


def _never_fires_but(alertnames: list[str], duration: float) -> dict[str, Any]:
    others = "|".join(alertnames) if alertnames else "__none__"
    selector = f'ALERTS{{alertstate="firing",alertname!~"{others}"}}'
    return {
        "expr": f"count_over_time({selector}[{_minutes(duration)}])",
        "eval_time": _minutes(duration),
        "exp_samples": [],
    }


def _inhibited(duration: float) -> dict[str, Any]:
    """No per-image alert fires at an evaluation where its registry's alert does not."""
    expr = (
        f"count_over_time((({_firing('RegmonChecksStale')} or {_firing('RegmonImageMissing')})"
        f" unless on (registry) {_firing('RegmonChecksFailing')})[{_minutes(duration)}:15s])"
    )
    return {"expr": expr, "eval_time": _minutes(duration), "exp_samples": []}


FAILING_DESCRIPTION = (
    "Most checks against {r} end in error (unreachable, timeout, TLS, rate limited, 5xx or"
    " auth failed): most of its images have had no usable answer for more than 2.5 check"
    " intervals, so regmon cannot tell whether they exist; they are not reported missing or"
    " stale meanwhile. Check the registry's status page, and regmon's network and credentials"
    " for it; the reason label of regmon_checks_total says which."
)


def _failing_alert(registry: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "registry": registry},
        "exp_annotations": {
            "summary": f"regmon cannot check images on {registry}",
            "description": FAILING_DESCRIPTION.format(r=registry),
        },
    }


def _ceil_to(value: float, step: int) -> int:
    return int(-(-value // step) * step)


def outage(name: str, interval: int) -> dict[str, Any]:
    start = 3 * interval
    end = start + 6 * interval + 600
    duration = end + 2 * interval + 900
    sim = Simulation(interval, duration, seed=interval)
    for i in range(5):
        sim.watch(REGISTRY, "demo/app", f"1.{i}")
    sim.watch(OTHER, "acme/api", "v2")
    sim.run(lambda ref, t: "error" if ref.startswith(REGISTRY) and start <= t < end else "present")
    # Fires at the latest 2.5 intervals after the outage began (every image of
    # the registry was last decided before it), plus its for: and a scrape.
    fired_by = _ceil_to(start + 2.5 * interval + 300 + 2 * sim.step, 60)
    # Resolved once every image has been checked again: one gap, plus scrapes.
    resolved_by = _ceil_to(end + 1.1 * interval + 2 * sim.step + 60, 60)
    return {
        "name": f"{name}: a registry outage is one RegmonChecksFailing, fired once and resolved",
        "interval": f"{sim.step}s",
        "input_series": sim.series(),
        "alert_rule_test": [
            {"eval_time": _minutes(start), "alertname": "RegmonChecksFailing", "exp_alerts": []},
            {
                "eval_time": _minutes(fired_by),
                "alertname": "RegmonChecksFailing",
                "exp_alerts": [_failing_alert(REGISTRY)],
            },
            {
                "eval_time": _minutes(end),
                "alertname": "RegmonChecksFailing",
                "exp_alerts": [_failing_alert(REGISTRY)],
            },
            {
                "eval_time": _minutes(resolved_by),
                "alertname": "RegmonChecksFailing",
                "exp_alerts": [],
            },
        ],
        "promql_expr_test": [
            {
                **_episodes("RegmonChecksFailing", f'registry="{REGISTRY}"', duration),
                "eval_time": _minutes(duration),
                "exp_samples": [{"labels": "{}", "value": 2}],
            },
            _never_fires_but(["RegmonChecksFailing"], duration),
            _inhibited(duration),
        ],
    }


def missing_image(name: str, interval: int) -> dict[str, Any]:
    deleted = 3 * interval
    duration = deleted + 2 * interval + 900
    sim = Simulation(interval, duration, seed=interval + 1)
    for tag in ("1.0", "2.0", "3.0"):
        sim.watch(REGISTRY, "demo/app", tag)
    gone = f"{REGISTRY}/demo/app:2.0"
    sim.run(lambda ref, t: "missing" if ref == gone and t >= deleted else "present")
    (image,) = [i for i in sim.images if i.ref == gone]
    first_missing = next(t for t, outcome in image.checks if outcome == "missing")
    # Pending from the first evaluation that sees available == 0, firing 5m later.
    pending = _ceil_to(first_missing + 0.05, sim.step)
    fires = pending + 300
    labels = {
        "severity": "critical",
        "image": gone,
        "registry": REGISTRY,
        "repository": "demo/app",
        "tag": "2.0",
        # No target label (job, instance) reaches an alert: the rules keep regmon's own.
    }
    alert = {
        "exp_labels": labels,
        "exp_annotations": {
            "summary": f"Image {gone} is missing",
            "description": (
                f"{REGISTRY} says {gone} does not exist or cannot be seen with regmon's"
                " credentials (missing or denied). Find out whether the tag was deleted or its"
                " repository made private, then re-push it or fix the credentials; regmon"
                f" history {gone} shows when it was last present and with which digest."
            ),
        },
    }
    return {
        "name": f"{name}: one missing image pages once, after its for:",
        "interval": f"{sim.step}s",
        "input_series": sim.series(),
        "alert_rule_test": [
            {
                "eval_time": f"{fires - EVALUATION_INTERVAL}s",
                "alertname": "RegmonImageMissing",
                "exp_alerts": [],
            },
            {"eval_time": f"{fires}s", "alertname": "RegmonImageMissing", "exp_alerts": [alert]},
            {
                "eval_time": _minutes(duration),
                "alertname": "RegmonImageMissing",
                "exp_alerts": [alert],
            },
        ],
        "promql_expr_test": [
            {
                **_episodes("RegmonImageMissing", "", duration),
                "eval_time": _minutes(duration),
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            _never_fires_but(["RegmonImageMissing"], duration),
        ],
    }


def failing_image(name: str, interval: int) -> dict[str, Any]:
    broken = 3 * interval
    duration = broken + 6 * interval + 900
    sim = Simulation(interval, duration, seed=interval + 2)
    for tag in ("1.0", "2.0", "3.0"):
        sim.watch(REGISTRY, "demo/app", tag)
    bad = f"{REGISTRY}/demo/app:3.0"
    sim.run(lambda ref, t: "error" if ref == bad and t >= broken else "present")
    return {
        "name": f"{name}: one failing image on a healthy registry is one RegmonChecksStale",
        "interval": f"{sim.step}s",
        "input_series": sim.series(),
        "promql_expr_test": [
            {
                **_episodes("RegmonChecksStale", f'image="{bad}"', duration),
                "eval_time": _minutes(duration),
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            _never_fires_but(["RegmonChecksStale"], duration),
        ],
    }


def flaky_check(name: str, interval: int) -> dict[str, Any]:
    duration = 8 * interval + 900
    flaky_at = 3 * interval
    sim = Simulation(interval, duration, seed=interval + 3)
    for tag in ("1.0", "2.0", "3.0"):
        sim.watch(REGISTRY, "demo/app", tag)
    solo = sim.watch(SOLO, "team/tool", "prod")
    flaky: dict[str, float] = {}

    def outcome(ref: str, t: float) -> str:
        # The first check of each image from flaky_at on ends in error, once.
        if t >= flaky_at and ref not in flaky and ref in (solo.ref, f"{REGISTRY}/demo/app:1.0"):
            flaky[ref] = t
            return "error"
        return "present"

    # The lone image gets the longest gaps jitter allows: the most time
    # without an answer that one failed check can cause.
    sim.run(outcome, forced_gaps={solo.ref: interval * (1 + JITTER)})
    return {
        "name": f"{name}: one flaky check pages no one, even on a registry with one image",
        "interval": f"{sim.step}s",
        "input_series": sim.series(),
        "promql_expr_test": [_never_fires_but([], duration)],
    }


def render() -> str:
    tests = []
    for name, seconds in INTERVALS.items():
        for scenario in (outage, missing_image, failing_image, flaky_check):
            tests.append(scenario(f"interval {name}", seconds))
    document = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": f"{EVALUATION_INTERVAL}s",
        "tests": tests,
    }
    header = (
        "# GENERATED by tests/support/alertsim.py from a simulated regmon exporter; do not edit.\n"
        "# promtool test rules config/prometheus/alerts_interval_test.yml\n"
        "# Proves the shipped rules at watch intervals 1m, 5m and 1h: a registry outage is one\n"
        "# RegmonChecksFailing (fired once, then resolved) and no per-image alert; one missing\n"
        "# image pages once after its for:; one failing image is one RegmonChecksStale; one\n"
        "# flaky check fires nothing.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1000)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render(), encoding="utf-8")
