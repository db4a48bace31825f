"""Service benchmark: ``regmon run`` watching N tags of a real registry.

    .venv/bin/python bench/service.py [--tags 10000] [--repos 100] [--cycles 10]
        [--interval auto|60s] [--auth token|none] [--concurrency 8] [--proxy both|on|off]
        [--time-limit 900]

Starts /usr/bin/docker-registry on loopback in a temp dir (token auth with the test
TokenIssuer by default, anonymous pull on ``public/*``; ``--auth none``: no auth), pushes
N tags across R repositories ``public/rNNN/app`` (config + layer blob once per
repository, then N small distinct OCI manifests -- an annotation differs -- PUT with 16
concurrent requests over one pooled client), then runs ``python -m monitor run`` as a
subprocess watching all N tags (jitter 0 %, interval 1 h for the first cycle,
``max_concurrency`` --concurrency for the registry) and measures:

* start -> /readyz, start -> every watch checked (first full cycle), the active span of
  the cycle (first to last ``last_checked``) and checks/s over it;
* registry requests per check (a CountingProxy in front of the registry; also the
  service's own ``regmon_registry_requests_total``) and token requests per check (the
  TokenIssuer's count), over the first cycle;
* CPU seconds of the service, the registry and this process (proxy + token issuer) over
  the first cycle, and the service's peak RSS (VmHWM);
* /healthz latency sampled every 0.25 s during the first cycle (event-loop stalls);
* /metrics, /api/v1/images and / (status page) response times and sizes with N tags;
* database size (file + -wal) after cycle 1 and after --cycles cycles of unchanged tags,
  with the row counts of history and events (history records changes only). For the
  cycles the config file is rewritten with a short interval (auto: about 1.25x the first
  cycle + 5 s) and the service reloads it; cycle k is complete when the smallest
  ``last_checked`` in the database passes the largest one of cycle k-1.

Progress is read from the SQLite file directly (one read-only connection, polled every
0.5 s), so the measurement itself puts no load on the service. The proxy costs CPU in
this process (one thread and one upstream connection per request, ``Connection: close``),
so with ``--proxy both`` (default) a second run without it gives the timing figures; the
cycles phase runs only in the first run. Everything is bounded by --time-limit; the
service, proxy, token issuer and registry are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from monitor.durations import parse_duration  # noqa: E402
from monitor.registry.transport import default_transport_factory  # noqa: E402
from tests.support import faults  # noqa: E402
from tests.support.faults import CountingProxy, RecordedRequest, free_port  # noqa: E402
from tests.support.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256_digest  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.token_issuer import USERNAME, TokenIssuer  # noqa: E402

# socketserver's default listen backlog is 5: with 8+ concurrent clients and one
# connection per request (the test servers answer "Connection: close") SYNs get dropped
# and retried after 1 s. Only this process's copy of the class is changed.
faults._OwnedHTTPServer.request_queue_size = 1024

PUSH_CONCURRENCY = 16
POLL = 0.25  # seconds between progress reads of the database
FIRST_INTERVAL = "1h"  # long: the first cycle never overlaps a second one
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- small helpers -------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"--time-limit reached while {what}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields_[11]) + int(fields_[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1048576:.1f} MiB"


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class QuietCountingProxy(CountingProxy):
    """CountingProxy that only counts (method, kind): no request list growing with cycles."""

    def __init__(self, upstream_host: str) -> None:
        super().__init__(upstream_host)
        self.by_kind: Counter[tuple[str, str]] = Counter()

    def _record(self, request: RecordedRequest) -> None:
        path = request.path
        if "/manifests/" in path:
            kind = "manifest"
        elif "/blobs/" in path:
            kind = "blob"
        elif path.rstrip("/") == "/v2":
            kind = "/v2/"
        else:
            kind = "other"
        with self._lock:
            self.by_kind[(request.method, kind)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.by_kind)


# --- pushing -------------------------------------------------------------------------


def layout(tags: int, repos: int) -> list[tuple[str, str]]:
    """(repository, tag) pairs, repository-major, tags spread evenly."""
    pairs = []
    for i in range(tags):
        repo = i % repos
        pairs.append((f"public/r{repo:03d}/app", f"t{i:05d}"))
    pairs.sort()
    return pairs


async def push_all(
    registry_url: str, issuer: TokenIssuer | None, pairs: list[tuple[str, str]], deadline: Deadline
) -> dict[str, Any]:
    repos = sorted({repo for repo, _ in pairs})
    tokens = (
        {
            repo: issuer.make_token(USERNAME, [f"repository:{repo}:pull,push"], expires_in=3600)
            for repo in repos
        }
        if issuer
        else {}
    )

    def headers(repo: str, extra: dict[str, str]) -> dict[str, str]:
        if repo in tokens:
            return {"Authorization": f"Bearer {tokens[repo]}", **extra}
        return extra

    layer = b"regmon bench layer\n" * 8
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
        }
    ).encode()
    blobs = [config, layer]
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    cpu0 = time.process_time()
    async with httpx.AsyncClient(
        base_url=registry_url, transport=default_transport_factory(False), timeout=30.0
    ) as http:

        async def push_blob(repo: str, data: bytes) -> None:
            digest = sha256_digest(data)
            start = await http.post(f"/v2/{repo}/blobs/uploads/", headers=headers(repo, {}))
            if start.status_code != 202:
                raise RuntimeError(f"blob upload {repo}: {start.status_code} {start.text[:200]}")
            location = httpx.URL(registry_url).join(start.headers["location"])
            done = await http.put(
                location.copy_merge_params({"digest": digest}),
                content=data,
                headers=headers(repo, {"Content-Type": "application/octet-stream"}),
            )
            if done.status_code != 201:
                raise RuntimeError(f"blob put {repo}: {done.status_code} {done.text[:200]}")

        async def push_manifest(repo: str, tag: str) -> None:
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": sha256_digest(config),
                        "size": len(config),
                    },
                    "layers": [
                        {"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer)}
                    ],
                    "annotations": {"org.example.regmon.bench.tag": f"{repo}:{tag}"},
                }
            ).encode()
            response = await http.put(
                f"/v2/{repo}/manifests/{tag}",
                content=body,
                headers=headers(repo, {"Content-Type": OCI_MANIFEST}),
            )
            want = "sha256:" + hashlib.sha256(body).hexdigest()
            if response.status_code != 201 or response.headers.get("docker-content-digest") != want:
                errors[f"manifest PUT -> {response.status_code}"] += 1

        async def workers(jobs: list[Any], fn: Any) -> None:
            it = iter(jobs)

            async def worker() -> None:
                for job in it:
                    deadline.check("pushing")
                    await fn(*job)

            await asyncio.gather(*(worker() for _ in range(PUSH_CONCURRENCY)))

        await workers([(repo, blob) for repo in repos for blob in blobs], push_blob)
        blobs_done = time.perf_counter()
        await workers(pairs, push_manifest)
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"push errors: {dict(errors)}")
    return {
        "wall": wall,
        "blobs_wall": blobs_done - started,
        "manifests_wall": wall - (blobs_done - started),
        "cpu": time.process_time() - cpu0,
        "manifests": len(pairs),
    }


# --- the service ---------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    db: Path,
    port: int,
    host: str,
    pairs: list[tuple[str, str]],
    interval: str,
    concurrency: int,
    timeout: str | None,
) -> None:
    lines = [
        f"database: sqlite:///{db}",
        f"listen: 127.0.0.1:{port}",
        "log: {level: info, format: text}",
        "defaults:",
        f"  interval: {interval}",
        "  jitter: 0%",
        "registries:",
        f'  "{host}":',
        f"    max_concurrency: {concurrency}",
        *([f"    timeout: {timeout}"] if timeout else []),
        "watch:",
    ]
    lines += [f"  - image: {host}/{repo}:{tag}" for repo, tag in pairs]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


class DbProbe:
    """Read-only view of the service's SQLite file (WAL: readers never block the writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self.conn is None:
            if not self.path.exists():
                return None
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        return self.conn

    def progress(self, after: str | None = None) -> tuple[int, str | None]:
        """(rows whose last_checked is set / later than ``after``, max last_checked)."""
        try:
            conn = self._conn()
            if conn is None:
                return 0, None
            if after is None:
                row = conn.execute(
                    "SELECT count(last_checked), max(last_checked) FROM tag_states"
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*), max(last_checked) FROM tag_states WHERE last_checked > ?",
                    (after,),
                ).fetchone()
            return int(row[0]), row[1]
        except sqlite3.Error:
            return 0, None

    def wait_cycle(
        self, n: int, after: str | None, alive: Any, deadline: Deadline, what: str
    ) -> tuple[float, float, str | None]:
        """Poll until ``n`` rows are checked (after ``after``): (t first seen, t all, max)."""
        first_seen: float | None = None
        while True:
            alive()
            count, high = self.progress(after)
            now = time.monotonic()
            if count and first_seen is None:
                first_seen = now
            if count >= n:
                return first_seen or now, now, high
            deadline.check(f"{what} ({count}/{n} checked)")
            time.sleep(POLL)

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        out: dict[str, int] = {}
        if conn is None:
            return out
        for table in ("watches", "tag_states", "history", "events", "deliveries"):
            try:
                out[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            except sqlite3.Error:
                out[table] = -1
        try:
            out["present"] = int(
                conn.execute("SELECT count(*) FROM tag_states WHERE status='present'").fetchone()[0]
            )
        except sqlite3.Error:
            out["present"] = -1
        return out

    def sizes(self) -> dict[str, int]:
        logical = 0
        conn = self._conn()
        if conn is not None:
            # Pages as a reader sees them (the WAL included): what the data takes.
            with contextlib.suppress(sqlite3.Error):
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                size = conn.execute("PRAGMA page_size").fetchone()[0]
                logical = (pages - free) * size
        return {
            "logical": logical,
            "db": file_size(self.path),
            "wal": file_size(self.path.with_name(self.path.name + "-wal")),
            "shm": file_size(self.path.with_name(self.path.name + "-shm")),
        }

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Sampler(threading.Thread):
    """GET /healthz every ``every`` s; records the latencies (event-loop responsiveness)."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        super().__init__(daemon=True, name="healthz-sampler")
        self.url = url
        self.every = every
        self.latencies: list[float] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30.0) as http:
            while not self._halt.is_set():
                t0 = time.perf_counter()
                try:
                    http.get(self.url)
                    self.latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError:
                    self.failures += 1
                self._halt.wait(max(0.0, self.every - (time.perf_counter() - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=35)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class RunResult:
    label: str
    proxied: bool
    n: int
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class ServiceRun:
    def __init__(
        self,
        *,
        workdir: Path,
        label: str,
        pairs: list[tuple[str, str]],
        registry: RegistryServer,
        issuer: TokenIssuer | None,
        proxied: bool,
        concurrency: int,
        timeout: str | None,
        cycles: int,
        interval: str,
        deadline: Deadline,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pairs = pairs
        self.n = len(pairs)
        self.registry = registry
        self.issuer = issuer
        self.proxied = proxied
        self.concurrency = concurrency
        self.timeout = timeout
        self.cycles = cycles
        self.interval = interval
        self.deadline = deadline
        self.db = workdir / "regmon.db"
        self.config_path = workdir / "regmon.yaml"
        self.log_path = workdir / "regmon.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proxy: QuietCountingProxy | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.result = RunResult(label, proxied, self.n)
        self.probe = DbProbe(self.db)
        self.http = httpx.Client(base_url=self.url, timeout=120.0)

    # lifecycle
    def run(self) -> RunResult:
        try:
            self._run()
        except Exception as exc:  # report what we have; cleanup happens below
            self.result.ok = False
            self.result.notes.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.close()
        return self.result

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
                self.result.values["stop_s"] = time.monotonic() - began
                self.result.values["exit_code"] = code
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.result.notes.append("service did not stop within 60 s of SIGTERM: killed")
        self.probe.close()
        self.http.close()
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        bad = [ln for ln in log.splitlines() if " WARNING " in ln or " ERROR " in ln]
        self.result.values["log_warnings"] = len(bad)
        if bad:
            self.result.notes.append(f"{len(bad)} WARNING/ERROR log lines, first: {bad[0][:300]}")

    def _run(self) -> None:
        v = self.result.values
        if self.proxied:
            self.proxy = QuietCountingProxy(self.registry.host).start()
            host = self.proxy.host
        else:
            host = self.registry.host
        write_config(
            self.config_path,
            db=self.db,
            port=self.port,
            host=host,
            pairs=self.pairs,
            interval=FIRST_INTERVAL,
            concurrency=self.concurrency,
            timeout=self.timeout,
        )
        if self.issuer is not None:
            self.issuer.reset()
        self_cpu0 = time.process_time()
        reg_cpu0 = cpu_seconds(self._registry_pid())
        log = self.log_path.open("ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(self.config_path)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-bench"},
        )
        log.close()
        pid = self.proc.pid

        # /readyz
        while True:
            self._alive()
            self.deadline.check("waiting for /readyz")
            try:
                if self.http.get("/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        v["ready_s"] = time.monotonic() - t0
        v["rss_ready_kb"] = proc_status_kb(pid, "VmRSS")
        v["service_cpu_ready_s"] = cpu_seconds(pid)

        # first cycle
        sampler = Sampler(self.url + "/healthz")
        sampler.start()
        try:
            t_first, t_all, high = self.probe.wait_cycle(
                self.n, None, self._alive, self.deadline, "waiting for the first cycle"
            )
        finally:
            sampler.stop()
        v["cycle1_s"] = time.monotonic() - t0
        v["service_cpu_s"] = cpu_seconds(pid)
        v["registry_cpu_s"] = cpu_seconds(self._registry_pid()) - reg_cpu0
        v["bench_cpu_s"] = time.process_time() - self_cpu0
        v["first_result_s"] = t_first - t0
        v["span_s"] = t_all - t_first
        v["cycle1_max"] = high
        v["healthz_n"] = len(sampler.latencies)
        v["healthz_p50_ms"] = percentile(sampler.latencies, 0.5) * 1000
        v["healthz_p99_ms"] = percentile(sampler.latencies, 0.99) * 1000
        v["healthz_max_ms"] = max(sampler.latencies, default=float("nan")) * 1000
        v["healthz_failures"] = sampler.failures
        if self.proxy is not None:
            v["proxy_cycle1"] = self.proxy.snapshot()
        if self.issuer is not None:
            v["tokens_cycle1"] = len(self.issuer.requests)
        time.sleep(1.0)  # let the writer flush its last batch (WRITE_INTERVAL 0.2 s)
        v["rss_cycle1_kb"] = proc_status_kb(pid, "VmRSS")
        v["hwm_cycle1_kb"] = proc_status_kb(pid, "VmHWM")
        v["sizes_cycle1"] = self.probe.sizes()
        v["rows_cycle1"] = self.probe.counts()

        # scrapes with N tags (service idle)
        metrics_text = ""
        for path, key, reps in (
            ("/metrics", "metrics", 5),
            ("/api/v1/images", "api", 3),
            ("/", "page", 3),
        ):
            times = []
            size = 0
            for _ in range(reps):
                self.deadline.check(f"scraping {path}")
                t = time.perf_counter()
                response = self.http.get(path)
                times.append(time.perf_counter() - t)
                size = len(response.content)
                if response.status_code != 200:
                    self.result.notes.append(f"{path} -> {response.status_code}")
                if path == "/metrics":
                    metrics_text = response.text
            v[f"{key}_ms"] = statistics.median(times) * 1000
            v[f"{key}_min_ms"] = min(times) * 1000
            v[f"{key}_bytes"] = size
        v.update(self._metrics_summary(metrics_text))
        v["hwm_scrape_kb"] = proc_status_kb(pid, "VmHWM")

        if self.cycles > 1:
            self._cycles(pid)
        v["hwm_kb"] = proc_status_kb(pid, "VmHWM")
        v["service_cpu_total_s"] = cpu_seconds(pid)

    def _cycles(self, pid: int) -> None:
        v = self.result.values
        span = v.get("span_s") or v["cycle1_s"]
        if self.interval == "auto":
            seconds = math.ceil(span * 1.25) + 5
        else:
            seconds = math.ceil(parse_duration(self.interval))
            if seconds < span * 1.1:
                self.result.notes.append(
                    f"--interval {self.interval} is shorter than the first cycle ({span:.0f} s)"
                    f"x1.1: using {math.ceil(span * 1.25) + 5} s"
                )
                seconds = math.ceil(span * 1.25) + 5
        v["cycle_interval_s"] = seconds
        proxy0 = self.proxy.snapshot() if self.proxy else Counter()
        tokens0 = len(self.issuer.requests) if self.issuer else 0
        prev_max = v["cycle1_max"]
        checks0 = v.get("checks_total", 0)
        reload_t = time.monotonic()
        write_config(
            self.config_path,
            db=self.db,
            port=self.port,
            host=self.proxy.host if self.proxy else self.registry.host,
            pairs=self.pairs,
            interval=f"{seconds}s",
            concurrency=self.concurrency,
            timeout=self.timeout,
        )
        # the service polls the file's mtime every second and logs "config reloaded"
        while "config reloaded" not in self.log_path.read_text(errors="replace"):
            self._alive()
            self.deadline.check("waiting for the config reload")
            time.sleep(0.2)
        v["reload_s"] = time.monotonic() - reload_t
        durations = []
        for k in range(2, self.cycles + 1):
            t_first, t_all, prev_max = self.probe.wait_cycle(
                self.n, prev_max, self._alive, self.deadline, f"waiting for cycle {k}"
            )
            durations.append(t_all - t_first)
        time.sleep(1.0)
        v["cycle_spans_s"] = durations
        v["sizes_final"] = self.probe.sizes()
        v["rows_final"] = self.probe.counts()
        more = self.cycles - 1
        if self.proxy:
            v["proxy_cycles"] = self.proxy.snapshot() - proxy0
        if self.issuer:
            v["tokens_cycles"] = len(self.issuer.requests) - tokens0
        text = self.http.get("/metrics").text
        after = self._metrics_summary(text)
        v["checks_total_final"] = after.get("checks_total", 0)
        v["requests_final"] = after.get("requests_total", 0)
        v["checks_in_cycles"] = after.get("checks_total", 0) - checks0
        v["cycles_expected_checks"] = more * self.n

    def _metrics_summary(self, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not text:
            return out
        checks: Counter[str] = Counter()
        requests: Counter[str] = Counter()
        series = 0
        last_check = 0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series += 1
                if sample.name == "regmon_checks_total":
                    checks[f"{sample.labels['status']}/{sample.labels['reason']}"] += int(
                        sample.value
                    )
                elif sample.name == "regmon_registry_requests_total":
                    requests[f"{sample.labels['method']} {sample.labels['code']}"] += int(
                        sample.value
                    )
                elif sample.name == "regmon_image_last_check_timestamp_seconds":
                    last_check += 1
        out["series"] = series
        out["checks"] = dict(checks)
        out["checks_total"] = sum(checks.values())
        out["requests"] = dict(requests)
        out["requests_total"] = sum(requests.values())
        out["last_check_series"] = last_check
        return out

    def _registry_pid(self) -> int:
        proc = self.registry._proc  # a benchmark may peek
        return proc.pid if proc is not None else -1

    def _alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"regmon exited with {code}:\n{tail}")


# --- report --------------------------------------------------------------------------


def report(
    args: argparse.Namespace, push: dict[str, Any], runs: list[RunResult], env: dict[str, str]
) -> str:
    out = []
    out.append(
        f"## service benchmark: {args.tags} tags / {args.repos} repos, auth {args.auth}, "
        f"max_concurrency {args.concurrency}, timeout {args.timeout or 'default (10s)'}"
    )
    out.append(", ".join(f"{k} {v}" for k, v in env.items()))
    out.append(
        f"push: {push['manifests']} manifests in {push['manifests_wall']:.1f} s "
        f"({push['manifests'] / max(push['manifests_wall'], 1e-9):,.0f}/s), blobs "
        f"{push['blobs_wall']:.1f} s, client CPU {push['cpu']:.1f} s"
    )
    for r in runs:
        v = r.values
        n = r.n
        out.append("")
        out.append(
            f"### {r.label} ({'through CountingProxy' if r.proxied else 'direct'})"
            f"{'' if r.ok else ' -- INCOMPLETE'}"
        )
        rows = [
            ("start -> /readyz", f"{fmt(v.get('ready_s'))} s"),
            ("start -> first result in the DB", f"{fmt(v.get('first_result_s'))} s"),
            ("start -> every watch checked (first cycle)", f"{fmt(v.get('cycle1_s'))} s"),
            ("span first..last result in the DB", f"{fmt(v.get('span_s'))} s"),
            ("checks/s over the span", fmt(n / v["span_s"], 0) if v.get("span_s") else "-"),
            (
                "checks/s from /readyz",
                fmt(n / (v["cycle1_s"] - v["ready_s"]), 0)
                if v.get("cycle1_s") and v.get("ready_s")
                else "-",
            ),
            ("service CPU s (start..cycle 1 done)", fmt(v.get("service_cpu_s"))),
            ("service CPU s at /readyz", fmt(v.get("service_cpu_ready_s"))),
            (
                "  per check after /readyz (ms)",
                fmt((v["service_cpu_s"] - v["service_cpu_ready_s"]) / n * 1000)
                if v.get("service_cpu_s") and v.get("service_cpu_ready_s") is not None
                else "-",
            ),
            (
                "  per check incl. start (ms)",
                fmt(v["service_cpu_s"] / n * 1000) if v.get("service_cpu_s") else "-",
            ),
            ("registry CPU s (cycle 1)", fmt(v.get("registry_cpu_s"))),
            ("bench process CPU s (proxy, issuer, probes)", fmt(v.get("bench_cpu_s"))),
            (
                "/healthz during cycle 1 p50 / p99 / max ms",
                f"{fmt(v.get('healthz_p50_ms'), 1)} / {fmt(v.get('healthz_p99_ms'), 1)} / "
                f"{fmt(v.get('healthz_max_ms'), 1)} "
                f"(n={v.get('healthz_n')}, failed {v.get('healthz_failures')})",
            ),
            (
                "RSS at ready / after cycle 1",
                f"{mib((v.get('rss_ready_kb') or 0) * 1024)} / "
                f"{mib((v.get('rss_cycle1_kb') or 0) * 1024)}",
            ),
            (
                "peak RSS (VmHWM) after cycle 1 / after scrapes / at end",
                f"{mib((v.get('hwm_cycle1_kb') or 0) * 1024)} / "
                f"{mib((v.get('hwm_scrape_kb') or 0) * 1024)} / "
                f"{mib((v.get('hwm_kb') or 0) * 1024)}",
            ),
            ("checks by status (cycle 1)", json.dumps(v.get("checks"))),
            ("service registry requests (cycle 1)", json.dumps(v.get("requests"))),
            ("  per check", fmt(v.get("requests_total", 0) / n, 3)),
        ]
        if "proxy_cycle1" in v:
            proxy = v["proxy_cycle1"]
            total = sum(proxy.values())
            rows.append(
                (
                    "proxy-counted requests (cycle 1)",
                    json.dumps({f"{m} {k}": c for (m, k), c in sorted(proxy.items())}),
                )
            )
            rows.append(("  per check", fmt(total / n, 3)))
        if "tokens_cycle1" in v:
            rows.append(
                (
                    "token requests (cycle 1) / per check",
                    f"{v['tokens_cycle1']} / {v['tokens_cycle1'] / n:.4f}",
                )
            )
        rows += [
            (
                "/metrics median (min) ms, bytes, series",
                f"{fmt(v.get('metrics_ms'), 0)} ({fmt(v.get('metrics_min_ms'), 0)}), "
                f"{v.get('metrics_bytes', 0):,}, {v.get('series', 0):,}",
            ),
            (
                "/api/v1/images median ms, bytes",
                f"{fmt(v.get('api_ms'), 0)}, {v.get('api_bytes', 0):,}",
            ),
            (
                "/ (status page) median ms, bytes",
                f"{fmt(v.get('page_ms'), 0)}, {v.get('page_bytes', 0):,}",
            ),
        ]
        s1 = v.get("sizes_cycle1")
        if s1:
            rows.append(
                (
                    "DB after cycle 1: db + wal (shm)",
                    f"{mib(s1['db'])} + {mib(s1['wal'])} = {mib(s1['db'] + s1['wal'])} "
                    f"({mib(s1['shm'])})",
                )
            )
            rows.append(("DB logical size (used pages) after cycle 1", mib(s1["logical"])))
            rows.append(("rows after cycle 1", json.dumps(v.get("rows_cycle1"))))
        sf = v.get("sizes_final")
        if sf:
            spans = v.get("cycle_spans_s") or []
            rows += [
                (
                    "cycles phase interval / reload took",
                    f"{v.get('cycle_interval_s')} s / {fmt(v.get('reload_s'))} s",
                ),
                (
                    f"cycles 2..{1 + len(spans)}: first..last result (s)",
                    ", ".join(f"{s:.1f}" for s in spans),
                ),
                (
                    f"DB after cycle {1 + len(spans)}: db + wal (shm)",
                    f"{mib(sf['db'])} + {mib(sf['wal'])} = {mib(sf['db'] + sf['wal'])} "
                    f"({mib(sf['shm'])})",
                ),
                ("DB logical size (used pages) at end", mib(sf["logical"])),
                (
                    "  ratio logical final / cycle 1",
                    fmt(sf["logical"] / max(1, s1["logical"]), 3) if s1 else "-",
                ),
                (
                    "  ratio (db+wal) final / cycle 1",
                    fmt((sf["db"] + sf["wal"]) / max(1, s1["db"] + s1["wal"]), 3) if s1 else "-",
                ),
                (
                    "  ratio db file final / cycle 1",
                    fmt(sf["db"] / max(1, s1["db"]), 3) if s1 else "-",
                ),
                ("rows at end", json.dumps(v.get("rows_final"))),
                (
                    "checks in cycles phase (expected)",
                    f"{v.get('checks_in_cycles')} ({v.get('cycles_expected_checks')})",
                ),
            ]
            if "proxy_cycles" in v:
                total = sum(v["proxy_cycles"].values())
                rows.append(
                    (
                        "proxy requests per check, cycles phase",
                        fmt(total / max(1, v.get("checks_in_cycles") or 1), 3),
                    )
                )
            if "tokens_cycles" in v:
                rows.append(("token requests in cycles phase", str(v["tokens_cycles"])))
        rows += [
            ("SIGTERM -> exit (code)", f"{fmt(v.get('stop_s'))} s ({v.get('exit_code')})"),
            ("WARNING/ERROR log lines", str(v.get("log_warnings"))),
        ]
        width = max(len(k) for k, _ in rows)
        out += [f"  {k.ljust(width)}  {val}" for k, val in rows]
        out += [f"  note: {note}" for note in r.notes]
    return "\n".join(out)


def environment() -> dict[str, str]:
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "RAM": mem,
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=10, help="cycles in all, the first included")
    parser.add_argument(
        "--interval",
        default="auto",
        help="interval of the cycles phase (auto: ~1.25x cycle 1 + 5 s)",
    )
    parser.add_argument("--auth", choices=["token", "none"], default="token")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="registries.<host>.max_concurrency"
    )
    parser.add_argument(
        "--proxy",
        choices=["both", "on", "off"],
        default="both",
        help="both: a proxied run (with the cycles phase), then a direct one",
    )
    parser.add_argument(
        "--timeout",
        default=None,
        help="registries.<host>.timeout (per request, and the check's budget); default: regmon's",
    )
    parser.add_argument("--time-limit", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)

    deadline = Deadline(args.time_limit)
    env = environment()
    print(f"environment: {env}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="regmon-bench-service-"))
    pairs = layout(args.tags, args.repos)
    runs: list[RunResult] = []
    push: dict[str, Any] = {}
    issuer: TokenIssuer | None = None
    registry: RegistryServer | None = None
    try:
        if args.auth == "token":
            issuer = TokenIssuer(expires_in=300).start()
        registry = RegistryServer(
            tmp / "registry", "token" if issuer else "noauth", issuer=issuer
        ).start()
        print(f"registry {registry.url}, pushing {len(pairs)} tags ...", flush=True)
        push = asyncio.run(push_all(registry.url, issuer, pairs, deadline))
        print(f"pushed in {push['wall']:.1f} s", flush=True)
        plan = {"both": [True, False], "on": [True], "off": [False]}[args.proxy]
        for i, proxied in enumerate(plan):
            label = f"run {i + 1}"
            print(
                f"{label}: service {'through the proxy' if proxied else 'direct'} ...", flush=True
            )
            run = ServiceRun(
                workdir=tmp / f"run{i + 1}",
                label=label,
                pairs=pairs,
                registry=registry,
                issuer=issuer,
                proxied=proxied,
                concurrency=args.concurrency,
                timeout=args.timeout,
                cycles=args.cycles if i == 0 else 1,
                interval=args.interval,
                deadline=deadline,
            ).run()
            runs.append(run)
            print(
                f"{label}: {'ok' if run.ok else 'INCOMPLETE: ' + '; '.join(run.notes)}", flush=True
            )
    finally:
        if registry is not None:
            registry.stop()
        if issuer is not None:
            issuer.close()
        env["load after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print()
        print(report(args, push, runs, env) if push else "push did not finish", flush=True)
        if args.keep:
            print(f"kept {tmp}")
        else:
            print(f"removing {tmp} ...", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
