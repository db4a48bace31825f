"""Requests and time per repository cycle for a repository of 1,000 tags (issue 11).

    .venv/bin/python bench/repository.py [--tags 1000] [--cycles 7]

Starts ``/usr/bin/docker-registry`` (noauth) in a temp dir and pushes one image
under ``--tags`` tags (``1.0.0`` … plus ``latest`` and a cosign ``.sig`` tag).
Then, in process, a ``Service`` with one ``repository:`` watch (SQLite in the
temp dir, no HTTP server) is pointed at the registry through a loopback proxy
that counts requests, once paging the listing 100 tags at a time with
``Link`` headers (as Docker Hub and distribution v3 do) and once passing the
registry's own unpaged answer through (2.8.2 ignores ``n=``). For each:

* **first** cycle: the baseline listing, the selection and the store sync of
  every selected tag as a watch (the tags' own first checks, one HEAD each,
  are then waited for and not counted here);
* **steady** cycles (median of ``--cycles``): a listing that changes nothing;
* **change** cycle: one tag pushed and one deleted before it: the listing,
  the selection, the store sync, the one ``tag.deleted`` and the HEAD that
  makes the new tag's ``tag.created``.

Each row gives the HTTP requests the cycle sent and its wall and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import parse_config  # noqa: E402
from monitor.service import Service  # noqa: E402
from tests.support.faults import CountingProxy  # noqa: E402
from tests.support.images import ImagePusher  # noqa: E402
from tests.support.paging import PagingProxy  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

REPO = "bench/many"
SIG = "sha256-" + "ab" * 32 + ".sig"


async def _settle(service: Service, keys: set[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while any(service.states().get(key) is None for key in keys):
        if time.monotonic() > deadline:
            raise SystemExit("the tags' first checks did not finish in time")
        await asyncio.sleep(0.05)
    await service.flush()


async def _cycle(service: Service, proxy: CountingProxy, key: str) -> tuple[int, int, float, float]:
    before = len(proxy.requests)
    pages_before = proxy.count("GET", f"/v2/{REPO}/tags/list")
    wall, cpu = time.perf_counter(), time.process_time()
    await service.list_repository(key)
    await service.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pages = proxy.count("GET", f"/v2/{REPO}/tags/list") - pages_before
    return len(proxy.requests) - before, pages, wall * 1000, cpu * 1000


async def _run(
    workdir: Path, proxy: CountingProxy, pusher: ImagePusher, cycles: int, label: str
) -> list[str]:
    key = f"{proxy.host}/{REPO}"
    config = parse_config(
        f"database: sqlite:///{workdir / label / 'regmon.db'}\n"
        f"docker_config: {workdir / 'none.json'}\n"
        "defaults: {interval: 1h, jitter: 0%}\n"
        f"watch:\n  - repository: {key}\n"
    )
    service = Service(config)
    await service.start(serve_http=False)
    rows = []
    try:
        proxy.reset()
        requests, pages, wall, cpu = await _cycle(service, proxy, key)
        [shown] = service.repositories()
        rows.append(_row(label, "first", len(shown.tags), requests, pages, wall, cpu))
        await _settle(service, set(shown.tags))
        steady = [await _cycle(service, proxy, key) for _ in range(cycles)]
        medians = [statistics.median(s[index] for s in steady) for index in range(4)]
        rows.append(_row(label, f"steady (median of {cycles})", len(shown.tags), *medians))
        new = "9.0.0" if label == "paged-100" else "9.1.0"
        await asyncio.to_thread(pusher.push_image, REPO, new)
        gone = "1.1.0" if label == "paged-100" else "1.2.0"  # each has a digest of its own
        await asyncio.to_thread(pusher.delete_tag, REPO, gone)
        requests, pages, wall, cpu = await _cycle(service, proxy, key)
        [shown] = service.repositories()
        rows.append(_row(label, "change (+1, -1)", len(shown.tags), requests, pages, wall, cpu))
    finally:
        await service.stop()
    return rows


def _row(
    label: str, cycle: str, tags: int, requests: float, pages: float, wall: float, cpu: float
) -> str:
    return f"| {label} | {cycle} | {tags} | {requests:.0f} | {pages:.0f} | {wall:.0f} | {cpu:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regmon-bench-repo-") as tmp:
        workdir = Path(tmp)
        with (
            RegistryServer(workdir / "registry", "noauth") as server,
            ImagePusher(server.url) as pusher,
        ):
            began = time.perf_counter()
            image = pusher.push_image(REPO, "1.0.0", seed="bench")
            # The deleted tag needs a digest of its own (a DELETE removes every tag of it).
            pusher.push_image(REPO, "1.1.0")
            pusher.push_image(REPO, "1.2.0")
            for n in range(3, args.tags):
                pusher.push_raw_manifest(REPO, f"1.{n}.0", image.body, image.media_type)
            for tag in ("latest", SIG):
                pusher.push_raw_manifest(REPO, tag, image.body, image.media_type)
            print(
                f"pushed {args.tags + 2} tags in {time.perf_counter() - began:.1f}s",
                file=sys.stderr,
            )
            rows = []
            proxies = (
                ("paged-100", lambda: PagingProxy(server.host, page_size=100)),
                ("unpaged", lambda: CountingProxy(server.host)),  # 2.8.2 ignores n=
            )
            for label, make_proxy in proxies:
                with make_proxy() as proxy:
                    (workdir / label).mkdir()
                    rows += asyncio.run(_run(workdir, proxy, pusher, args.cycles, label))
    print(
        "| listing | cycle | tags selected | HTTP requests | tags/list pages | wall ms | CPU ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
