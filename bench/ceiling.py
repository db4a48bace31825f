"""``regmon check`` against the registry's ceiling, in the same run (issue 15, goal 5).

    .venv/bin/python bench/ceiling.py [--refs 2000] [--repos 20] [--connections 8,16,32]
        [--repeats 3] [--slots 32,64] [--one 15 [--regmon /tmp/venv/bin/regmon]]

Starts /usr/bin/docker-registry (no auth) on 127.0.0.1 in a temp dir with --refs tags
(seeded as bench/scale.py does), then per repeat:

* ceiling: the cheapest client there is, raw asyncio streams on C keep-alive
  connections each sending ``HEAD /v2/<repo>/manifests/<tag>`` with regmon's Accept
  header and reading the answer's head (~0.06 M instructions per request): the rate the
  registry itself allows on this machine, best over --connections;
* ``regmon check`` of all --refs references (``python -m monitor check``, the registry's
  default ``max_concurrency`` of 8), wall time from process start to exit, imports included;
* with --slots N: ``regmon check --config`` of a config that gives the registry
  ``max_concurrency: N`` (pydantic's import included, ~0.2 s), beside the ceiling at
  c=N, so that the comparison is like for like;
* the ratio checks/s ÷ ceiling req/s.

``--one N`` measures goal 6 instead: ``regmon check`` of one reference, N runs, wall
time min and median beside ``python -c pass`` (interleaved, the load average
printed). ``--regmon`` names the command to time, e.g. the console script of a wheel
installed in a fresh venv (as a user runs it: bytecode compiled, no editable finder);
the default is ``python -m monitor`` of this checkout.

Client and registry share the cores, as they do in a real run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (str(ROOT), str(ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from scale import layout, monitor_env, seed  # noqa: E402  (bench/scale.py)
from service import environment  # noqa: E402  (bench/service.py)

from monitor.registry.manifests import ACCEPT_HEADER  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


async def _raw_heads(host: str, port: int, paths: list[str], connections: int) -> float:
    """HEAD every path over ``connections`` keep-alive connections; returns req/s."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                path = queue.get_nowait()
                writer.write(
                    f"HEAD {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: regmon\r\n"
                    f"Accept: {ACCEPT_HEADER}\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"{path}: {head.splitlines()[0]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(paths) / (time.perf_counter() - started)


def regmon_check(refs: list[str], config: Path | None = None) -> tuple[float, int]:
    extra = ["--config", str(config)] if config is not None else []
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--timeout", "10m", *extra, *refs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=monitor_env(),
    )
    took = time.perf_counter() - started
    present = sum(1 for line in proc.stdout.splitlines() if line.startswith("present"))
    if proc.returncode != 0 or present != len(refs):
        raise RuntimeError(f"regmon check: exit {proc.returncode}, {present} present\n"
                           f"{proc.stderr[-2000:]}")  # fmt: skip
    return took, present


def one_check(registry: RegistryServer, runs: int, command: str | None) -> None:
    """Goal 6: wall time of ``regmon check`` of one reference, ``runs`` times."""
    from tests.support.images import ImagePusher

    with ImagePusher(f"http://{registry.host}") as pusher:
        pusher.push_image("public/one", "v1")
    ref = f"{registry.host}/public/one:v1"
    regmon = shlex.split(command) if command else [sys.executable, "-m", "monitor"]
    python = regmon[0] if regmon[0].endswith(("python", "python3")) else sys.executable
    if command and len(regmon) == 1:  # a console script: its venv's interpreter
        python = str(Path(regmon[0]).with_name("python"))
    env = monitor_env() if command is None else {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "DOCKER_CONFIG": "/nonexistent-regmon-bench",
    }  # fmt: skip
    commands = {"python -c pass": [python, "-c", "pass"], "regmon check": [*regmon, "check", ref]}
    times: dict[str, list[float]] = {label: [] for label in commands}
    for cmd in commands.values():  # a warm-up run each (page cache)
        subprocess.run(cmd, capture_output=True, env=env, cwd=tempfile.gettempdir(), check=True)
    for _ in range(runs):
        for label, cmd in commands.items():
            started = time.perf_counter()
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
            )
            times[label].append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise RuntimeError(f"{label}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, took in times.items():
        took.sort()
        print(
            f"{label}: min {took[0]:.3f} s, median {statistics.median(took):.3f} s "
            f"({runs} runs: {' '.join(f'{t:.3f}' for t in took)})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=int, default=2000)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--connections", default="8,16,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slots", default="", help="max_concurrency values to run with")
    parser.add_argument("--one", type=int, default=0, help="goal 6: runs of one check")
    parser.add_argument("--regmon", help="with --one: the command to time")
    args = parser.parse_args(argv)
    print(f"environment: {environment()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="regmon-bench-ceiling-"))
    registry = RegistryServer(tmp / "registry", "noauth").start()
    if args.one:
        try:
            one_check(registry, args.one, args.regmon)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    rows: list[tuple[int, float, int, float, float]] = []
    # (run, slots, ceiling at c=slots, regmon check checks/s)
    slot_rows: list[tuple[int, int, float, float]] = []
    try:
        pairs = layout(args.refs, args.repos)
        took = seed(registry, pairs)
        print(f"registry {registry.host}: {len(pairs)} tags seeded in {took:.1f} s", flush=True)
        host, port = registry.host.rsplit(":", 1)
        paths = [f"/v2/{repo}/manifests/{tag}" for repo, tag in pairs]
        refs = [f"{registry.host}/{repo}:{tag}" for repo, tag in pairs]
        conns = [int(c) for c in args.connections.split(",") if c]
        slots = [int(n) for n in args.slots.split(",") if n]
        configs = {}
        for n in slots:
            configs[n] = tmp / f"slots-{n}.yaml"
            configs[n].write_text(
                f"registries:\n  '{registry.host}': {{max_concurrency: {n}}}\nwatch: []\n"
            )
        asyncio.run(_raw_heads(host, int(port), paths[:200], 8))  # warm the registry
        for run in range(1, args.repeats + 1):
            rates = {
                c: asyncio.run(_raw_heads(host, int(port), paths, c))
                for c in sorted({8, *conns, *slots})
            }
            best = max(conns, key=lambda c: rates[c])
            wall, present = regmon_check(refs)
            rows.append((run, rates[best], best, rates[8], len(refs) / wall))
            print(
                f"run {run}: ceiling "
                + ", ".join(f"c={c} {r:.0f} req/s" for c, r in rates.items())
                + f"; regmon check {present} refs in {wall:.2f} s = {len(refs) / wall:.0f}/s",
                flush=True,
            )
            for n in slots:
                wall, present = regmon_check(refs, configs[n])
                slot_rows.append((run, n, rates[n], len(refs) / wall))
                print(
                    f"run {run}: regmon check --config (max_concurrency {n}) {present} refs"
                    f" in {wall:.2f} s = {len(refs) / wall:.0f}/s",
                    flush=True,
                )
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| run | ceiling req/s (best c) | ceiling at c=8 | `regmon check` checks/s "
          "| ratio to best | ratio to c=8 |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for run, ceiling, best, at8, rate in rows:
        print(f"| {run} | {ceiling:.0f} (c={best}) | {at8:.0f} | {rate:.0f} "
              f"| {rate / ceiling:.2f} | {rate / at8:.2f} |")  # fmt: skip
    if slot_rows:
        print("\n| run | max_concurrency | ceiling at c=max_concurrency | checks/s | ratio |")
        print("|---:|---:|---:|---:|---:|")
        for run, n, ceiling, rate in slot_rows:
            print(f"| {run} | {n} | {ceiling:.0f} | {rate:.0f} | {rate / ceiling:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
