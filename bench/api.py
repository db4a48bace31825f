"""Image listing and status page at scale: time per request, in process.

    .venv/bin/python bench/api.py [--watches 2000,10000,50000] [--repeats 7]

Builds a fake ``ServiceView`` of N watches (states: 1 in 40 never checked,
1 in 50 missing, 1 in 500 error, the rest present) and calls the real Starlette
app through ``httpx.ASGITransport``; each figure is the median of ``--repeats``
requests (the first request of a row, which builds the sorted index, is
reported apart as ``first``). Run it on a tree with ``monitor/api.py`` (before
the web split) to get the old numbers of the unpaged answers: paged rows are
then skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.config import Config, Watch, parse_config  # noqa: E402
from monitor.domain import Reason, Status  # noqa: E402
from monitor.records import TagState  # noqa: E402
from monitor.reference import parse_reference  # noqa: E402

try:
    from monitor.web.app import create_app

    PAGED = True
except ImportError:  # the tree before the split: unpaged answers only
    from monitor.api import create_app  # type: ignore[no-redef]

    PAGED = False

T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)


@dataclass
class BenchView:
    config: Config
    watch_list: tuple[Watch, ...]
    state_map: dict[str, TagState] = field(default_factory=dict)
    engine: Any = None

    def watches(self) -> Sequence[Watch]:
        # What Service.watches() does: a fresh list of the same objects.
        return list(self.watch_list)

    def states(self) -> Mapping[str, TagState]:
        return dict(self.state_map)

    def is_ready(self) -> bool:
        return True

    async def check_now(self, key: str) -> TagState:
        raise KeyError(key)


def make_view(count: int) -> BenchView:
    watches = []
    states: dict[str, TagState] = {}
    for i in range(count):
        # Config order is not reference order: the index has something to sort.
        ref = parse_reference(
            f"registry-{i % 7}.example.com/team{(i * 7919) % 97}/app{i}:v{i % 13}"
        )
        key = str(ref)
        watches.append(
            Watch(
                image=ref,
                key=key,
                interval=300.0,
                cron=None,
                jitter=0.1,
                platforms=(),
                webhooks=(),
                missing_after=2,
                failing_after=3,
            )
        )
        if i % 40 == 0:
            continue
        status = Status.PRESENT
        if i % 500 == 7:
            status = Status.ERROR
        elif i % 50 == 3:
            status = Status.MISSING
        states[key] = TagState(
            image=key,
            status=status,
            decided_status=Status.PRESENT if status is Status.ERROR else status,
            digest="sha256:" + f"{i:064x}" if status is not Status.MISSING else None,
            reason=Reason.TIMEOUT if status is Status.ERROR else None,
            detail="manifest unknown" if status is Status.MISSING else None,
            first_seen=T0,
            last_checked=T0 + timedelta(minutes=5),
            last_decided=T0 + timedelta(minutes=5),
            last_changed=T0,
        )
    return BenchView(
        config=parse_config("watch: []\n"), watch_list=tuple(watches), state_map=states
    )


async def timed(client: httpx.AsyncClient, url: str, repeats: int) -> tuple[float, float, int]:
    """(first request, median of the others) in seconds, and the body size."""
    times = []
    size = 0
    for _ in range(repeats + 1):
        start = time.perf_counter()
        response = await client.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
        size = len(response.content)
    return times[0], statistics.median(times[1:]), size


async def run(count: int, repeats: int) -> list[tuple[str, float, float, int]]:
    view = make_view(count)
    app = create_app(view, CollectorRegistry())  # type: ignore[arg-type]
    middle = sorted(w.key for w in view.watch_list)[count // 2]
    cases = [("JSON all (unpaged, config order)", "/api/v1/images")]
    if PAGED:
        cases += [
            ("JSON first page (limit 500)", "/api/v1/images?limit=500"),
            ("JSON page after the middle", f"/api/v1/images?limit=500&after={middle}"),
            ("JSON status=error (rare)", "/api/v1/images?status=error"),
            ("JSON status=missing", "/api/v1/images?status=missing"),
            ("HTML first page", "/"),
            ("HTML page after the middle", f"/?after={middle}"),
            ("HTML status=error", "/?status=error"),
        ]
    else:
        cases += [("HTML (every watch)", "/")]
    rows = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
        for name, url in cases:
            first, median, size = await timed(client, url, repeats)
            rows.append((name, first, median, size))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watches", default="2000,10000,50000")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"paged API: {PAGED}; Python {sys.version.split()[0]}")
    print("| watches | request | first s | median s | body kB |")
    print("|---:|---|---:|---:|---:|")
    for count in (int(part) for part in args.watches.split(",")):
        for name, first, median, size in asyncio.run(run(count, args.repeats)):
            print(f"| {count:,} | {name} | {first:.3f} | {median:.3f} | {size / 1000:,.0f} |")


if __name__ == "__main__":
    main()
