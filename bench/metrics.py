"""``/metrics`` benchmark: the real ``Metrics`` collector over a fake state of N watches.

    .venv/bin/python bench/metrics.py [--watches 2000,10000,50000] [--scrapes 10]
        [--format text|openmetrics|both] [--path api|library] [--churn 1] [--service N]

In-process, no registry: for each N it builds N ``Watch`` objects (over 3 registries
and 100 repositories; 1 % cron watches, the rest 5 min / 1 min intervals) and their
``TagState`` (90 % present, 4 % missing, 1 % denied, 4 % error after a decided check,
1 % never checked), registers ``monitor.metrics.Metrics`` on a fresh
``CollectorRegistry`` over a SQLite store at the newest schema (the webhook backlog
query runs as in the service), and scrapes it ``--scrapes`` times the way
``GET /metrics`` does (``--path api``: ``monitor.metrics.exposition``, what the API
calls; ``--path library``: ``prometheus_client``'s encoder over the registry, what any
other caller of ``registry.collect()`` gets). Between scrapes ``--churn`` % (default 1)
of the states are replaced by newer ones (a check cycle in progress: 50,000 watches
every 5 min scraped every 15 s is 5 %), so the per-state text cache cannot hide the cost
of re-rendering what changed.

Printed per N and format: series (sample lines), per-watch series, bytes, scrape time
(median and min of the warm scrapes; the first, cold one separately), the median CPU
time of a warm scrape (``process_time``: steadier than wall time on a shared machine),
and VmRSS before the first scrape, after it, after the last one, and the peak (VmHWM)
-- each N runs in its own subprocess so the figures of one N do not carry into the next.

``--service N`` additionally runs the real service (``python -m monitor run``) with N
watches of an unreachable loopback registry whose states are written into its database
before it starts, waits until every watch has been checked once (all end in error, so
the state keeps its digests and decided status), and times ``GET /metrics`` over HTTP
(median of ``--scrapes``); RSS is the service's after the scrapes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DIGEST = "sha256:{:064x}"
REGISTRIES = ("docker.io", "ghcr.io", "registry.example.com:5000")
NOW = datetime.now(UTC).replace(microsecond=0)


def rss_mib(field_name: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fake_watches(count: int) -> list[Any]:
    from monitor.config import Watch
    from monitor.reference import parse_reference

    watches = []
    for i in range(count):
        registry = REGISTRIES[i % len(REGISTRIES)]
        text = f"{registry}/team{i % 100:03d}/app{i // 100 % 50}:v{i}"
        ref = parse_reference(text)
        cron = "*/15 * * * *" if i % 100 == 7 else None
        watches.append(
            Watch(
                image=ref,
                key=str(ref),
                interval=None if cron else (60.0 if i % 10 == 3 else 300.0),
                cron=cron,
                jitter=0.1,
                platforms=(),
                webhooks=("ops",),
                missing_after=1,
                failing_after=3,
            )
        )
    return watches


def fake_state(watch: Any, i: int, rng: random.Random, now: datetime) -> Any:
    from monitor.domain import Reason, Status
    from monitor.records import TagState

    roll = i % 100
    checked = now - timedelta(seconds=rng.uniform(0, 300))
    if roll == 99:
        return None  # not checked yet
    base = TagState(
        image=watch.key,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest=DIGEST.format(rng.getrandbits(256)),
        first_seen=now - timedelta(days=30),
        last_checked=checked,
        last_decided=checked,
        last_changed=now - timedelta(days=rng.uniform(0, 30)),
        digest_changes=rng.randrange(4),
    )
    if roll < 90:
        return base
    if roll < 94:
        return replace(base, status=Status.MISSING, decided_status=Status.MISSING, digest=None)
    if roll < 95:
        return replace(base, status=Status.DENIED, decided_status=Status.DENIED, digest=None)
    return replace(
        base,
        status=Status.ERROR,
        reason=Reason.TIMEOUT,
        last_decided=checked - timedelta(seconds=300),
        consecutive_errors=1,
    )


@dataclass
class BenchView:
    config: Any
    engine: Any
    watch_list: list[Any]
    state_map: dict[str, Any] = field(default_factory=dict)

    def watches(self) -> Sequence[Any]:
        return list(self.watch_list)

    def states(self) -> Mapping[str, Any]:
        return dict(self.state_map)  # the service hands out a copy too

    def is_ready(self) -> bool:
        return True

    def is_leader(self) -> bool:
        return True  # one replica: the per-image series are exported

    def repositories(self) -> Sequence[Any]:
        return []

    async def check_now(self, key: str) -> Any:
        raise KeyError(key)


def encoder_for(path: str, fmt: str) -> Any:
    accept = "application/openmetrics-text; version=1.0.0" if fmt == "openmetrics" else ""
    if path == "api":
        import monitor.metrics

        exposition = getattr(monitor.metrics, "exposition", None)
        if exposition is not None:
            return lambda registry: exposition(registry, accept)[0]
    from prometheus_client.exposition import choose_encoder

    return choose_encoder(accept)[0]


def run_one(count: int, scrapes: int, fmt: str, path: str, churn: float) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from monitor.config import parse_config
    from monitor.metrics import Metrics
    from monitor.store.engine import make_engine, upgrade

    rng = random.Random(count)
    with tempfile.TemporaryDirectory(prefix="regmon-bench-metrics-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'regmon.db'}")
        upgrade(engine)
        config = parse_config("webhooks:\n  - name: ops\n    url: https://hooks.example.com/\n")
        view = BenchView(config, engine, fake_watches(count))
        for i, watch in enumerate(view.watch_list):
            state = fake_state(watch, i, rng, NOW)
            if state is not None:
                view.state_map[watch.key] = state
        registry = CollectorRegistry()
        Metrics(registry, view)  # type: ignore[arg-type]
        encode = encoder_for(path, fmt)
        rss_before = rss_mib()
        times: list[float] = []
        cpu: list[float] = []
        rss_first = 0.0
        body = b""
        keys = list(view.state_map)
        for scrape in range(scrapes):
            if scrape:
                # A check cycle in progress: --churn of the states are newer.
                later = NOW + timedelta(seconds=scrape)
                for key in rng.sample(keys, max(1, round(len(keys) * churn))):
                    view.state_map[key] = replace(
                        view.state_map[key], last_checked=later, last_decided=later
                    )
            body = b""  # drop the previous body first, as a server does
            start, start_cpu = time.perf_counter(), time.process_time()
            body = encode(registry)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if not scrape:
                rss_first = rss_mib()
        rss_after = rss_mib()
        peak = rss_mib("VmHWM")  # before the counting below, which is not a scrape's cost
        engine.dispose()
    lines = body.decode().splitlines()
    series = sum(1 for line in lines if line and not line.startswith("#"))
    per_watch = sum(1 for line in lines if line.startswith("regmon_image_"))
    warm = times[1:] or times
    return {
        "watches": count,
        "format": fmt,
        "path": path,
        "series": series,
        "per_watch": per_watch / count,
        "bytes": len(body),
        "first_s": times[0],
        "median_s": statistics.median(warm),
        "min_s": min(warm),
        "cpu_s": statistics.median(cpu[1:] or cpu),
        "rss_before_mib": rss_before,
        "rss_first_mib": rss_first,
        "rss_after_mib": rss_after,
        "peak_mib": peak,
    }


def run_service(count: int, scrapes: int) -> dict[str, Any]:
    """The real service over a database that already holds ``count`` states."""
    import httpx

    from monitor.records import Evaluation
    from monitor.store.engine import make_engine, upgrade
    from monitor.store.repository import record_evaluations, sync_watches
    from tests.support.faults import free_port
    from tests.support.wait import wait_for

    rng = random.Random(count)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: checks end in error, fast
    with tempfile.TemporaryDirectory(prefix="regmon-bench-metrics-") as tmp:
        root = Path(tmp)
        port = free_port()
        refs = [f"{dead}/team{i % 100:03d}/app:v{i}" for i in range(count)]
        (root / "regmon.yaml").write_text(
            "database: sqlite:///" + str(root / "regmon.db") + "\n"
            f"listen: {{host: 127.0.0.1, port: {port}}}\n"
            "defaults: {interval: 1h, jitter: 0%}\n"
            # Refused connections are retried after a delay: many at once keep
            # the first cycle short.
            f"registries: {{'{dead}': {{max_concurrency: 1000, timeout: 2s}}}}\n"
            "watch:\n" + "".join(f"  - image: {ref}\n" for ref in refs)
        )
        from monitor.config import load_config, resolve_watches

        config = load_config(root / "regmon.yaml")
        engine = make_engine(f"sqlite:///{root / 'regmon.db'}")
        upgrade(engine)
        watches = resolve_watches(config)
        sync_watches(
            engine,
            [
                SimpleNamespace(
                    image=w.key,
                    registry=w.image.registry,
                    repository=w.image.repository,
                    tag=w.image.tag or "",
                    interval_seconds=w.interval,
                    cron=w.cron,
                )
                for w in watches
            ],
            NOW,
        )
        evaluations = []
        for i, watch in enumerate(watches):
            state = fake_state(watch, i % 99, rng, NOW)
            evaluations.append(Evaluation(state=state, events=()))
        record_evaluations(engine, evaluations, lambda e: {}, lambda e: (), now=NOW)
        engine.dispose()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(root / "regmon.yaml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as http:

                def ready() -> bool:
                    try:
                        return http.get("/readyz").status_code == 200
                    except httpx.HTTPError:
                        return False

                wait_for(ready, timeout=300, interval=0.25, message="service ready")

                def checked() -> bool:
                    # Every watch checked once (they all end in error: nothing
                    # listens), so no check cycle competes with the scrapes below.
                    text = http.get("/metrics").text
                    done = sum(
                        float(line.rpartition(" ")[2])
                        for line in text.splitlines()
                        if line.startswith("regmon_checks_total{")
                    )
                    return done >= count

                wait_for(checked, timeout=900, interval=5, message="first cycle done")
                times = []
                body = b""
                for _ in range(scrapes):
                    start = time.perf_counter()
                    body = http.get("/metrics").content
                    times.append(time.perf_counter() - start)
                rss = _proc_rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "watches": count,
        "format": "text",
        "path": "service HTTP",
        "series": series,
        "per_watch": sum(1 for x in body.decode().splitlines() if x.startswith("regmon_image_"))
        / count,
        "bytes": len(body),
        "first_s": times[0],
        "median_s": statistics.median(times[1:] or times),
        "min_s": min(times),
        "cpu_s": float("nan"),
        "rss_before_mib": float("nan"),
        "rss_first_mib": float("nan"),
        "rss_after_mib": rss[0],
        "peak_mib": rss[1],
    }


def _proc_rss(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def versions() -> str:
    import prometheus_client

    return (
        f"Python {platform.python_version()}, prometheus_client "
        f"{getattr(prometheus_client, '__version__', None) or _dist('prometheus_client')}, "
        f"nproc {os.cpu_count()}, {platform.machine()}, load {os.getloadavg()[0]:.1f}"
    )


def _dist(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watches", default="2000,10000,50000")
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--format", choices=("text", "openmetrics", "both"), default="text")
    parser.add_argument("--path", choices=("api", "library"), default="api")
    parser.add_argument(
        "--churn", type=float, default=1.0, help="%% of states replaced between scrapes"
    )
    parser.add_argument("--service", type=int, default=0, help="also time a real service")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: one JSON result
    args = parser.parse_args()
    if args.one:
        count, fmt = args.one.split(":")
        print(json.dumps(run_one(int(count), args.scrapes, fmt, args.path, args.churn / 100)))
        return
    formats = ("text", "openmetrics") if args.format == "both" else (args.format,)
    results = []
    for count in (int(x) for x in args.watches.split(",")):
        for fmt in formats:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{count}:{fmt}",
                    "--scrapes",
                    str(args.scrapes),
                    "--path",
                    args.path,
                    "--churn",
                    str(args.churn),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(out.splitlines()[-1]))
            print_row(results[-1], header=len(results) == 1)
    if args.service:
        print_row(run_service(args.service, args.scrapes), header=False)
    print(versions())


def print_row(r: dict[str, Any], *, header: bool) -> None:
    if header:
        print(
            "| watches | format | path | series | per watch | bytes | first s | median s "
            "| min s | CPU s | RSS before / 1st / last / peak MiB |"
        )
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {r['watches']:,} | {r['format']} | {r['path']} | {r['series']:,} | "
        f"{r['per_watch']:.2f} | {r['bytes']:,} | {r['first_s']:.3f} | {r['median_s']:.3f} | "
        f"{r['min_s']:.3f} | {r['cpu_s']:.3f} | {r['rss_before_mib']:.0f} / "
        f"{r['rss_first_mib']:.0f} / {r['rss_after_mib']:.0f} / {r['peak_mib']:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
