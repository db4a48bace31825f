"""Python calls per check: N concurrent checks in process under cProfile, by package.

    .venv/bin/python bench/check_profile.py [--checks 1000] [--top 0]

Starts /usr/bin/docker-registry (noauth) on loopback, pushes one tag, and runs N checks of
it at once through one ``RegistryClient`` (the default transport, each check holding its
registry slot as ``regmon check`` and the service do) after one check that discovers
the registry. Prints the Python calls per check (a count, unlike time, the machine load
does not change much) and each package's share of the profiled time, the wait in
``epoll`` (the registry's time) apart. A copy of it in another checkout (an export
of main, for "before") profiles that tree.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.checker import check_reference  # noqa: E402
from monitor.domain import Status  # noqa: E402
from monitor.reference import ImageReference, parse_reference  # noqa: E402
from monitor.registry.client import RegistryClient  # noqa: E402
from tests.support.images import ImagePusher  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

GROUPS = (
    ("aiohttp", "aiohttp"),
    ("httpx", "httpx"),
    ("httpcore", "httpcore"),
    ("multidict/yarl", "multidict"),
    ("multidict/yarl", "yarl"),
    ("asyncio", "asyncio"),
    ("asyncio", "selectors"),
    ("regmon", "/monitor/"),
)


def group(file: str, function: str) -> str:
    if file == "~":
        return "epoll wait" if "poll" in function else "builtins"
    return next((name for name, part in GROUPS if part in file), "other")


async def run(refs: list[ImageReference], profile: cProfile.Profile) -> None:
    async with RegistryClient() as client:

        async def one(ref: ImageReference) -> Status:
            async with client.slot(ref):
                return (await check_reference(client, ref, budget=60.0)).status

        if await one(refs[0]) is not Status.PRESENT:
            raise RuntimeError("the discovering check failed")
        profile.enable()
        statuses = await asyncio.gather(*(one(ref) for ref in refs))
        profile.disable()
    if set(statuses) != {Status.PRESENT}:
        raise RuntimeError(f"checks ended {set(statuses)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    args = parser.parse_args(argv)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="regmon-bench-profile-") as tmp:
        with RegistryServer(Path(tmp) / "registry", "noauth") as registry:
            with ImagePusher(registry.url) as pusher:
                pusher.push_image("bench/app", "t0", "oci")
            refs = [parse_reference(f"{registry.host}/bench/app:t0")] * args.checks
            asyncio.run(run(refs, profile))
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    calls = sum(nc for (_, nc, _, _, _) in entries.values())
    shares: dict[str, float] = {}
    counts: dict[str, int] = {}
    for (file, _line, function), (_, nc, tottime, _, _) in entries.items():
        name = group(file, function)
        shares[name] = shares.get(name, 0.0) + tottime
        counts[name] = counts.get(name, 0) + nc
    busy = sum(t for name, t in shares.items() if name != "epoll wait")
    print(f"{args.checks} checks: {calls / args.checks:.0f} Python calls per check")
    print("| part | calls per check | share of profiled CPU (epoll wait apart) |")
    print("|---|---:|---:|")
    for name, tottime in sorted(shares.items(), key=lambda kv: -kv[1]):
        share = "—" if name == "epoll wait" else f"{tottime / busy * 100:.0f} %"
        print(f"| {name} | {counts[name] / args.checks:.0f} | {share} |")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
