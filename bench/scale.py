"""Scale benchmark: ``regmon run`` with 2k / 10k / 50k watches of a real registry on loopback.

    .venv/bin/python bench/scale.py [--watches 2000,10000,50000] [--repos 100]
        [--concurrency 8] [--soak SECONDS --soak-watches N --soak-interval 60s
         --scrape-every 15 --soak-reloads K] [--callgrind 200,800] [--tree PATH[,PATH]]
        [--ready-only]
        [--time-limit 1800] [--migrated]

Starts /usr/bin/docker-registry (no auth) on 127.0.0.1 in a temp dir and gives it
max(N) tags spread over R repositories ``public/rNNN/app``: one image is pushed per
repository through the API, and the other tags are written into the registry's
filesystem storage as the registry itself writes a tag (``_manifests/tags/<tag>/current/link``
and its index link), so 50,000 tags take seconds instead of minutes of PUTs. Every tag
of a repository names the same manifest; the registry answers a HEAD of each the same
way it would for distinct ones (it reads the tag's link, then the revision).

Per N (one service each, ``python -m monitor run``, jitter 0 %, interval 1 h, the
registry's ``max_concurrency`` --concurrency): start -> /readyz, start -> every watch
checked (read from the SQLite file), checks/s over the first full cycle, service CPU per
check after /readyz, registry CPU per check, RSS at ready and after the first cycle,
peak RSS (VmHWM), and how many check tasks existed at most (the service's task count is
not visible from outside: the figure is VmRSS growth instead).

``--soak SECONDS``: one more service with --soak-watches N checked every --soak-interval
from its start; after its first cycle RSS is sampled every 30 s and /metrics is scraped
every --scrape-every seconds (as Prometheus would) for SECONDS. ``--soak-reloads K``
rewrites the config K times, evenly spaced, each time toggling the interval by one second
(every watch changes: a whole new config, the worst reload). Prints RSS over time, the
mean of each span between reloads (its first and last third with none), the checks done.

``--callgrind A,B``: ``regmon check`` of A and of B references under
``valgrind --tool=callgrind``; prints the instructions (Ir) of each and the marginal
instructions per check, (Ir(B) - Ir(A)) / (B - A), a count that machine noise does not
change.

``--tree PATH[,PATH]`` runs ``python -m monitor`` from other checkouts (say an export
of main, for a before/after; several: each N back to back per tree) instead of this one;
``--ready-only`` stops each scale run at /readyz (start-up figures only).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (str(ROOT), str(ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import httpx  # noqa: E402
from service import (  # noqa: E402  (bench/service.py)
    DbProbe,
    Deadline,
    cpu_seconds,
    environment,
    proc_status_kb,
    write_config,
)

from tests.support.faults import free_port  # noqa: E402
from tests.support.images import ImagePusher  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

POLL = 0.25
TREE = ROOT  # where ``python -m monitor`` runs from (--tree)


def monitor_env() -> dict[str, str]:
    return {
        **os.environ,
        "DOCKER_CONFIG": "/nonexistent-regmon-bench",
        "PYTHONPATH": str(TREE),
    }


def layout(tags: int, repos: int) -> list[tuple[str, str]]:
    return sorted((f"public/r{i % repos:03d}/app", f"t{i:05d}") for i in range(tags))


def seed(registry: RegistryServer, pairs: list[tuple[str, str]]) -> float:
    """Push one image per repository, then link every other tag to it on disk."""
    started = time.perf_counter()
    repos = sorted({repo for repo, _ in pairs})
    digests: dict[str, str] = {}
    with ImagePusher(registry.url) as pusher:
        for repo in repos:
            digests[repo] = pusher.push_image(repo, "seed", "oci").digest
    v2 = registry.storage / "docker" / "registry" / "v2" / "repositories"
    for repo, tag in pairs:
        digest = digests[repo]
        tag_dir = v2 / repo / "_manifests" / "tags" / tag
        (tag_dir / "current").mkdir(parents=True, exist_ok=True)
        (tag_dir / "current" / "link").write_text(digest)
        index = tag_dir / "index" / "sha256" / digest.split(":", 1)[1]
        index.mkdir(parents=True, exist_ok=True)
        (index / "link").write_text(digest)
    return time.perf_counter() - started


class Service:
    """One ``regmon run`` subprocess over a generated config."""

    def __init__(self, workdir: Path, host: str, pairs: list[tuple[str, str]], concurrency: int):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.pairs = pairs
        self.host = host
        self.concurrency = concurrency
        self.db = workdir / "regmon.db"
        self.config = workdir / "regmon.yaml"
        self.log = workdir / "regmon.log"
        self.port = free_port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120.0)
        self.probe = DbProbe(self.db)
        self.proc: subprocess.Popen[bytes] | None = None
        self.write("1h")

    def write(self, interval: str) -> None:
        write_config(
            self.config,
            db=self.db,
            port=self.port,
            host=self.host,
            pairs=self.pairs,
            interval=interval,
            concurrency=self.concurrency,
            timeout=None,
        )

    def migrate(self) -> None:
        """``regmon db upgrade`` first, so that ``run`` finds the schema at head (a restart,
        or any start after the install's migration) and never imports Alembic."""
        subprocess.run(
            [sys.executable, "-m", "monitor", "db", "upgrade", "--config", str(self.config)],
            cwd=TREE,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            env=monitor_env(),
        )

    def start(self) -> float:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(self.config)],
                cwd=TREE,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=monitor_env(),
            )
        return time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"regmon exited with {code}:\n{tail}")

    def wait_ready(self, deadline: Deadline) -> None:
        while True:
            self.alive()
            deadline.check("waiting for /readyz")
            try:
                if self.http.get("/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS") or 0

    def hwm_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM") or 0

    def stop(self) -> float | None:
        proc, self.proc = self.proc, None
        self.probe.close()
        self.http.close()
        if proc is None or proc.poll() is not None:
            return None
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return time.monotonic() - began

    def warnings(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [ln for ln in text.splitlines() if " WARNING " in ln or " ERROR " in ln]


def one_scale(
    tmp: Path, registry: RegistryServer, pairs: list[tuple[str, str]], args: Any, dl: Deadline
) -> dict[str, Any]:
    n = len(pairs)
    svc = Service(tmp / f"scale-{n}-{TREE.name}", registry.host, pairs, args.concurrency)
    v: dict[str, Any] = {"watches": n}
    if args.migrated:
        svc.migrate()
    try:
        reg_cpu0 = cpu_seconds(registry_pid(registry))
        t0 = svc.start()
        svc.wait_ready(dl)
        v["ready_s"] = time.monotonic() - t0
        v["rss_ready_mib"] = svc.rss_kb() / 1024
        if args.ready_only:
            return v
        cpu_ready = cpu_seconds(svc.pid)
        t_first, t_all, _ = svc.probe.wait_cycle(n, None, svc.alive, dl, "the first cycle")
        v["cycle_s"] = t_all - t0
        v["span_s"] = t_all - t_first
        v["checks_per_s"] = n / max(v["span_s"], 1e-9)
        v["cpu_per_check_ms"] = (cpu_seconds(svc.pid) - cpu_ready) / n * 1000
        v["registry_cpu_per_check_ms"] = (cpu_seconds(registry_pid(registry)) - reg_cpu0) / n * 1000
        time.sleep(1.0)  # the last batch of writes
        v["rss_cycle_mib"] = svc.rss_kb() / 1024
        v["hwm_mib"] = svc.hwm_kb() / 1024
        counts = svc.probe.counts()
        v["present"] = counts.get("present")
    finally:
        v["stop_s"] = svc.stop()
        v["warnings"] = len(svc.warnings())
        if v["warnings"]:
            v["first_warning"] = svc.warnings()[0][:300]
    return v


def soak(
    tmp: Path, registry: RegistryServer, pairs: list[tuple[str, str]], args: Any, dl: Deadline
) -> dict[str, Any]:
    n = len(pairs)
    svc = Service(tmp / f"soak-{n}", registry.host, pairs, args.concurrency)
    samples: list[tuple[float, float, float]] = []  # (s since cycle 1, RSS MiB, HWM MiB)
    v: dict[str, Any] = {"watches": n, "interval": args.soak_interval}
    svc.write(args.soak_interval)
    if args.migrated:
        svc.migrate()
    reload_every = args.soak / (args.soak_reloads + 1)
    intervals = [args.soak_interval, _plus_one_second(args.soak_interval)]
    reloads: list[float] = []
    try:
        svc.start()
        svc.wait_ready(dl)
        svc.probe.wait_cycle(n, None, svc.alive, dl, "the soak's first cycle")
        t0 = time.monotonic()
        samples.append((0.0, svc.rss_kb() / 1024, svc.hwm_kb() / 1024))
        print(f"soak: {n} watches, interval {args.soak_interval}, {args.soak:.0f} s", flush=True)
        next_sample = t0 + 30
        next_scrape = t0 + args.scrape_every if args.scrape_every else float("inf")
        scrapes = 0
        end = t0 + args.soak
        while time.monotonic() < end:
            svc.alive()
            dl.check("soaking")
            now = time.monotonic()
            if now >= next_scrape:
                svc.http.get("/metrics").raise_for_status()
                scrapes += 1
                next_scrape += args.scrape_every
            if len(reloads) < args.soak_reloads and now - t0 >= reload_every * (len(reloads) + 1):
                svc.write(intervals[(len(reloads) + 1) % 2])
                reloads.append(now - t0)
                print(f"  {now - t0:7.0f} s  config rewritten (reload {len(reloads)})", flush=True)
            if now >= next_sample:
                sample = (now - t0, svc.rss_kb() / 1024, svc.hwm_kb() / 1024)
                samples.append(sample)
                print(f"  {sample[0]:7.0f} s  RSS {sample[1]:6.1f} MiB  HWM {sample[2]:6.1f}")
                next_sample += 30
            time.sleep(0.2)
        text = svc.http.get("/metrics").text
        v["checks_total"] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("regmon_checks_total{")
        )
        v["scrapes"] = scrapes + 1
        v["samples"] = samples
        v["reloads"] = reloads
        if reloads:
            edges = [0.0, *reloads, float("inf")]
            v["rss_spans"] = [
                (lo, statistics.mean(x[1] for x in samples if lo <= x[0] < hi))
                for lo, hi in itertools.pairwise(edges)
                if any(lo <= x[0] < hi for x in samples)
            ]
        third = max(1, len(samples) // 3)
        v["rss_first_third"] = statistics.mean(s[1] for s in samples[:third])
        v["rss_last_third"] = statistics.mean(s[1] for s in samples[-third:])
    finally:
        v["stop_s"] = svc.stop()
        v["warnings"] = len(svc.warnings())
    return v


def _plus_one_second(interval: str) -> str:
    """``60s`` -> ``61s``: another schedule for every watch, the same load."""
    match = re.fullmatch(r"(\d+)s", interval)
    if match is None:
        raise SystemExit(f"--soak-interval {interval!r}: write it in seconds, e.g. 60s")
    return f"{int(match.group(1)) + 1}s"


def callgrind(
    tmp: Path, registry: RegistryServer, pairs: list[tuple[str, str]], counts: list[int]
) -> dict[int, int]:
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    out: dict[int, int] = {}
    for count in counts:
        refs = [f"{registry.host}/{repo}:{tag}" for repo, tag in pairs[:count]]
        target = tmp / f"callgrind.{count}.out"
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={target}",
                sys.executable,
                "-m",
                "monitor",
                "check",
                "--timeout",
                "10m",
                *refs,
            ],
            cwd=TREE,
            capture_output=True,
            text=True,
            check=False,
            env=monitor_env(),
        )
        present = sum(1 for line in proc.stdout.splitlines() if line.startswith("present"))
        if proc.returncode != 0 or present != count:
            raise RuntimeError(f"check of {count} under callgrind: exit {proc.returncode}, "
                               f"{present} present\n{proc.stderr[-2000:]}")  # fmt: skip
        match = re.search(r"^(?:summary|totals): (\d+)", target.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no instruction count in {target}")
        out[count] = int(match.group(1))
        print(f"callgrind: {count} checks, {out[count]:,} instructions", flush=True)
    return out


def registry_pid(registry: RegistryServer) -> int:
    proc = registry._proc  # a benchmark may peek
    return proc.pid if proc is not None else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watches", default="2000,10000,50000")
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of soak (0: none)")
    parser.add_argument("--soak-watches", type=int, default=10_000)
    parser.add_argument("--soak-interval", default="60s")
    parser.add_argument("--scrape-every", type=float, default=15.0)
    parser.add_argument("--soak-reloads", type=int, default=0, help="config rewrites in the soak")
    parser.add_argument("--callgrind", default="", help="A,B: regmon check of A and B refs")
    parser.add_argument(
        "--tree", default=str(ROOT), help="checkout(s) to run regmon from, comma-separated"
    )
    parser.add_argument(
        "--ready-only", action="store_true", help="scale: stop at /readyz (start-up only)"
    )
    parser.add_argument("--time-limit", type=float, default=1800.0)
    parser.add_argument(
        "--migrated",
        action="store_true",
        help="run `regmon db upgrade` before each service (its schema at head at start)",
    )
    args = parser.parse_args(argv)
    global TREE
    trees = [Path(t).resolve() for t in args.tree.split(",")]
    TREE = trees[-1]  # soak and callgrind: the last one

    sizes = [int(x) for x in args.watches.split(",") if x]
    grind = [int(x) for x in args.callgrind.split(",") if x]
    dl = Deadline(args.time_limit)
    env = environment()
    env["tree"] = args.tree
    print(f"environment: {env}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="regmon-bench-scale-"))
    registry = RegistryServer(tmp / "registry", "noauth").start()
    results: list[dict[str, Any]] = []
    try:
        total = max([*sizes, args.soak_watches if args.soak else 0, *grind, 1])
        pairs = layout(total, args.repos)
        took = seed(registry, pairs)
        print(f"registry {registry.host}: {total} tags seeded in {took:.1f} s", flush=True)
        for n in sizes:
            for tree in trees:  # back to back: the same machine load for each tree
                TREE = tree
                print(f"scale: {n} watches, {tree} ...", flush=True)
                results.append({"tree": tree.name, **one_scale(tmp, registry, pairs[:n], args, dl)})
                print(f"  {results[-1]}", flush=True)
        TREE = trees[-1]
        soaked = soak(tmp, registry, pairs[: args.soak_watches], args, dl) if args.soak else None
        ir = callgrind(tmp, registry, pairs, grind) if grind else {}
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    env["load after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    if results and args.ready_only:
        print("| tree | watches | start → /readyz s | RSS at ready MiB |")
        print("|---|---:|---:|---:|")
        for v in results:
            print(
                f"| {v['tree']} | {v['watches']:,} | {v['ready_s']:.2f} | "
                f"{v['rss_ready_mib']:.0f} |"
            )
    elif results:
        print("| watches | start → /readyz s | start → cycle done s | checks/s | "
              "service CPU ms/check | registry CPU ms/check | RSS ready / after cycle / "
              "peak MiB | present | warnings |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for v in results:
            print(
                f"| {v['watches']:,} | {v['ready_s']:.2f} | {v['cycle_s']:.1f} | "
                f"{v['checks_per_s']:.0f} | {v['cpu_per_check_ms']:.2f} | "
                f"{v['registry_cpu_per_check_ms']:.2f} | {v['rss_ready_mib']:.0f} / "
                f"{v['rss_cycle_mib']:.0f} / {v['hwm_mib']:.0f} | {v['present']:,} | "
                f"{v['warnings']} |"
            )
    if soaked:
        print(
            f"soak: {soaked['watches']:,} watches every {soaked['interval']}, "
            f"{soaked['checks_total']:,.0f} checks, {soaked['scrapes']} scrapes; RSS mean "
            f"first third {soaked['rss_first_third']:.1f} MiB, last third "
            f"{soaked['rss_last_third']:.1f} MiB; samples (s, RSS, HWM): "
            + ", ".join(f"{t:.0f}:{r:.0f}/{h:.0f}" for t, r, h in soaked["samples"])
        )
        if soaked["reloads"]:
            print(
                "soak: reloads at "
                + ", ".join(f"{t:.0f} s" for t in soaked["reloads"])
                + "; RSS mean per span (from s: MiB): "
                + ", ".join(f"{lo:.0f}: {mean:.1f}" for lo, mean in soaked["rss_spans"])
            )
    if len(ir) >= 2:
        a, b = sorted(ir)[0], sorted(ir)[-1]
        print(
            f"callgrind: {a} checks {ir[a]:,} Ir, {b} checks {ir[b]:,} Ir: "
            f"{(ir[b] - ir[a]) / (b - a) / 1e6:.3f} M instructions per check (marginal)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
