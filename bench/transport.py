"""Transport benchmark: regmon checks/s and latency per HTTP transport, against a real registry.

    .venv/bin/python bench/transport.py [--requests 2000] [--concurrency 1,16,64] [--repeats 2]

Starts /usr/bin/docker-registry (noauth) on loopback in a temp dir, pushes 20 tags of
one repository, then for every repeat, transport and concurrency level:

* checks: one RegistryClient with that transport factory and
  ``RegistrySettings(max_concurrency=c)``, one warm-up check, then N
  ``check_reference`` calls over the 20 tags gated by ``asyncio.Semaphore(c)``;
  wall time -> checks/s, per-check latency (measured inside the semaphore) -> p50/p95.
* raw: N plain ``HEAD /v2/<repo>/manifests/<tag>`` with a bare ``httpx.AsyncClient``
  on the same transport and concurrency (no regmon logic): the ceiling the
  registry + transport allow, to tell client overhead from server cost.

Every run is bounded by N and by --time-limit seconds. Warnings (ResourceWarning
included) and asyncio loop errors (aiohttp's "Unclosed client session") raised
while a run closes its client are collected and printed after the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from monitor.checker import check_reference  # noqa: E402
from monitor.domain import Status  # noqa: E402
from monitor.reference import parse_reference  # noqa: E402
from monitor.registry.client import RegistryClient, RegistrySettings  # noqa: E402
from monitor.registry.manifests import ACCEPT_HEADER  # noqa: E402
from monitor.registry.transport import (  # noqa: E402
    TransportFactory,
    default_transport_factory,
    httpx_transport,
)
from tests.support.images import ImagePusher  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.transports import httpx_over_aiohttp  # noqa: E402

REPO = "bench/app"
TAGS = [f"t{i:02d}" for i in range(20)]
# lean: the default (the manifest HEAD on aiohttp's session directly); aiohttp: the same
# transport through httpx only; raw requests are httpx's on every transport.
TRANSPORTS: dict[str, TransportFactory] = {
    "lean": default_transport_factory,
    "aiohttp": httpx_over_aiohttp,
    "httpcore": httpx_transport,
}


@dataclass
class Run:
    done: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds (the registry runs in another process)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.done * 1e6 if self.done else float("nan")

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[round(q * 100) - 1] * 1000


@dataclass
class Row:
    repeat: int
    transport: str
    concurrency: int
    checks: Run
    raw: Run


Observed = list[str]


def _run_loop(coro_fn: Callable[[], Awaitable[Run]], observed: Observed) -> Run:
    """asyncio.run with every warning and loop error recorded (not printed, not raised)."""

    async def main() -> Run:
        loop = asyncio.get_running_loop()

        def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            observed.append(f"loop error: {context.get('message')!s} {context.get('exception')!r}")

        loop.set_exception_handler(handler)
        result = await coro_fn()
        # Give the transports' close callbacks a chance to run, then collect.
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        return result

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = asyncio.run(main())
        gc.collect()
    observed.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    return result


async def _drive(
    n: int,
    concurrency: int,
    time_limit: float,
    one: Callable[[int], Awaitable[str | None]],
) -> Run:
    """Run ``one(i)`` for i in range(n), at most ``concurrency`` at a time, within time_limit."""
    run = Run()
    sem = asyncio.Semaphore(concurrency)

    async def task(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            try:
                error = await one(i)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            run.latencies.append(time.perf_counter() - t0)
            run.done += 1
            if error:
                run.errors[error[:160]] += 1

    start = time.perf_counter()
    cpu_start = time.process_time()
    tasks = [asyncio.ensure_future(task(i)) for i in range(n)]
    try:
        async with asyncio.timeout(time_limit):
            await asyncio.gather(*tasks)
    except TimeoutError:
        run.timed_out = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    run.wall = time.perf_counter() - start
    run.cpu = time.process_time() - cpu_start
    return run


async def bench_checks(
    host: str, factory: TransportFactory, n: int, concurrency: int, time_limit: float
) -> Run:
    refs = [parse_reference(f"{host}/{REPO}:{tag}") for tag in TAGS]
    client = RegistryClient(
        settings_for=lambda _h: RegistrySettings(max_concurrency=concurrency),
        transport_factory=factory,
    )
    try:
        warm = await check_reference(client, refs[0], budget=10.0)
        if warm.status is not Status.PRESENT:
            raise RuntimeError(f"warm-up check failed: {warm.status} {warm.reason} {warm.detail}")

        async def one(i: int) -> str | None:
            result = await check_reference(client, refs[i % len(refs)], budget=10.0)
            if result.status is Status.PRESENT:
                return None
            return f"{result.status.value} {result.reason} {result.detail}"

        return await _drive(n, concurrency, time_limit, one)
    finally:
        await client.aclose()


async def bench_raw(
    base_url: str, factory: TransportFactory, n: int, concurrency: int, time_limit: float
) -> Run:
    urls = [f"{base_url}/v2/{REPO}/manifests/{tag}" for tag in TAGS]
    headers = {"Accept": ACCEPT_HEADER}
    async with httpx.AsyncClient(transport=factory(False), timeout=10.0) as http:
        warm = await http.head(urls[0], headers=headers)
        if warm.status_code != 200:
            raise RuntimeError(f"raw warm-up answered HTTP {warm.status_code}")

        async def one(i: int) -> str | None:
            response = await http.head(urls[i % len(urls)], headers=headers)
            return None if response.status_code == 200 else f"HTTP {response.status_code}"

        return await _drive(n, concurrency, time_limit, one)


def _versions() -> str:
    from importlib import metadata

    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("httpx", "httpcore", "aiohttp", "httpx-aiohttp"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} (missing)")
    import os

    parts.append(f"nproc {len(os.sched_getaffinity(0))}")
    return ", ".join(parts)


def _table(rows: list[Row]) -> str:
    lines = [
        "| run | transport | concurrency | checks/s | p50 ms | p95 ms | raw req/s "
        "| client CPU µs/check | raw CPU µs/req | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        errs = sum(r.checks.errors.values()) + sum(r.raw.errors.values())
        flag = " (time limit)" if r.checks.timed_out or r.raw.timed_out else ""
        lines.append(
            f"| {r.repeat} | {r.transport} | {r.concurrency} | {r.checks.rate:,.0f}{flag} "
            f"| {r.checks.pct(0.50):.2f} | {r.checks.pct(0.95):.2f} | {r.raw.rate:,.0f} "
            f"| {r.checks.cpu_us:,.0f} | {r.raw.cpu_us:,.0f} | {errs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="checks per run (default 2000)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma list (default 1,16,64)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over every config")
    parser.add_argument(
        "--transports", default=",".join(TRANSPORTS), help="comma list of lean,aiohttp,httpcore"
    )
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds per run before it is cut off"
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    names = [t.strip() for t in args.transports.split(",") if t.strip()]
    if args.requests < 1 or any(c < 1 for c in levels) or not 1 <= args.repeats <= 20:
        parser.error("--requests, --concurrency must be >= 1; --repeats 1..20")
    for name in names:
        if name not in TRANSPORTS:
            parser.error(f"unknown transport {name!r}")

    rows: list[Row] = []
    observed: dict[str, Observed] = {}
    with tempfile.TemporaryDirectory(prefix="regmon-bench-") as tmp:
        server = RegistryServer(Path(tmp) / "registry", mode="noauth").start()
        try:
            with ImagePusher(server.url) as pusher:
                for i, tag in enumerate(TAGS):
                    pusher.push_image(REPO, tag, "oci", seed=i)
            print(f"# registry {server.url}, {len(TAGS)} tags of {REPO}; {_versions()}", flush=True)
            for repeat in range(1, args.repeats + 1):
                for name in names:
                    factory = TRANSPORTS[name]
                    for c in levels:
                        notes = observed.setdefault(f"{name} c={c}", [])
                        checks = _run_loop(
                            lambda f=factory, c=c: bench_checks(
                                server.host, f, args.requests, c, args.time_limit
                            ),
                            notes,
                        )
                        raw = _run_loop(
                            lambda f=factory, c=c: bench_raw(
                                server.url, f, args.requests, c, args.time_limit
                            ),
                            notes,
                        )
                        row = Row(repeat, name, c, checks, raw)
                        rows.append(row)
                        print(_table([row]).splitlines()[-1], flush=True)
                        for label, run in (("checks", checks), ("raw", raw)):
                            for err, count in run.errors.most_common(5):
                                notes.append(f"{label} error x{count}: {err}")
        finally:
            server.stop()

    print()
    print(_table(rows))
    print()
    noted = {k: Counter(v) for k, v in observed.items() if v}
    if not noted:
        print("No warnings, loop errors or check errors from either transport.")
    for key, counter in noted.items():
        print(f"{key}:")
        for text, count in counter.most_common(10):
            print(f"  x{count} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
