"""Run a real Prometheus (Debian ``prometheus`` 2.42) on loopback and read its HTTP API.

    with PrometheusServer(tmp_path, {"global": {...}, "scrape_configs": [...]}, rules) as prom:
        prom.query('up{job="regmon"}')   # data.result of /api/v1/query (an instant vector)
        prom.alerts()                    # data.alerts of /api/v1/alerts (pending and firing)

``rules_path`` (optional) becomes the only entry of ``rule_files``. Storage is a
fresh TSDB under ``tmp_path``; no Alertmanager, no remote write. The process is
always terminated on exit, and its log is kept in ``tmp_path/prometheus.log``.

``shorten_for(rules, out, "2s")`` writes a copy of a rule file whose every
``for:`` is the given duration (the shipped 5m-10m would outlast any test).
``scale_durations(rules, out, 1 / 30)`` multiplies every duration of a rule file
(each ``for:`` and each range ``[70m]`` in an expression) and nothing else, so
a test runs the shipped logic on a faster clock. ``extra_args`` adds flags.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import pytest
import yaml

from .faults import free_port
from .wait import wait_for

__all__ = [
    "PROMETHEUS_BINARY",
    "PROMTOOL_BINARY",
    "PrometheusServer",
    "promtool",
    "require_prometheus_binaries",
    "scale_duration",
    "scale_durations",
    "shorten_for",
]

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
PROMTOOL_BINARY = Path("/usr/bin/promtool")

_INSTALL_HINT = (
    "{binary} is missing: the end-to-end alerting test needs a real Prometheus. "
    "Run scripts/test, which installs it (Debian package `prometheus`: "
    "apt-get install -y prometheus), then rerun the tests."
)


def require_prometheus_binaries() -> None:
    """Fail (never skip) the calling test when prometheus or promtool is not installed."""
    for binary in (PROMETHEUS_BINARY, PROMTOOL_BINARY):
        if not binary.exists():
            pytest.fail(_INSTALL_HINT.format(binary=binary), pytrace=False)


def shorten_for(rules_path: Path, out: Path, duration: str) -> Path:
    """Copy a rule file with every rule's ``for:`` set to ``duration``; checked by promtool."""
    data = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    changed = 0
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = duration
                changed += 1
    assert changed, f"{rules_path} has no rule with a for:"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    check = subprocess.run(
        [str(PROMTOOL_BINARY), "check", "rules", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, f"promtool check rules {out}:\n{check.stdout}{check.stderr}"
    return out


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d))(?=[]:])")


def scale_duration(duration: str, factor: float) -> str:
    """``"5m"`` times ``1/30`` is ``"10s"``; whole milliseconds, in a Prometheus duration."""
    match = _DURATION.fullmatch(duration)
    assert match is not None, f"not a simple Prometheus duration: {duration!r}"
    millis = round(int(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1000 * factor)
    assert millis > 0, f"{duration} times {factor} is no time at all"
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def scale_durations(rules_path: Path, out: Path, factor: float) -> Path:
    """Copy a rule file with every ``for:`` and range duration multiplied by ``factor``."""
    data = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    changed = 0
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scale_duration(rule["for"], factor)
                changed += 1
            rule["expr"] = _RANGE.sub(
                lambda m: "[" + scale_duration(m.group(1), factor), rule["expr"]
            )
    assert changed, f"{rules_path} has no rule with a for:"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    _check_rules(out)
    return out


def _check_rules(path: Path) -> None:
    check = subprocess.run(
        [str(PROMTOOL_BINARY), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, f"promtool check rules {path}:\n{check.stdout}{check.stderr}"


class PrometheusServer:
    """One ``prometheus`` subprocess with its own config, TSDB and port."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        rules_path: Path | None = None,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.storage = self.workdir / "tsdb"
        self.log_path = self.workdir / "prometheus.log"
        self.port = port or free_port()
        self.config = dict(config)
        if rules_path is not None:
            self.config["rule_files"] = [str(Path(rules_path).resolve())]
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # lifecycle
    def start(self, timeout: float = 20.0) -> Self:
        """Start and wait until ``/-/ready`` answers 200 (TSDB open, config and rules loaded)."""
        if self.running:
            return self
        require_prometheus_binaries()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                str(PROMETHEUS_BINARY),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address={self.host}",
                f"--web.external-url={self.url}/",
                "--log.level=info",
                *self.extra_args,
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._client = httpx.Client(base_url=self.url, timeout=5.0)
        try:
            wait_for(self._ready, timeout=timeout, interval=0.05, message=f"prometheus {self.url}")
        except BaseException:
            self.stop()
            raise
        return self

    def _raise_if_exited(self) -> None:
        if self._proc is None:
            raise RuntimeError("prometheus is not started")
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {self._proc.returncode}:\n{self.read_log()[-4000:]}"
            )

    def _ready(self) -> bool:
        self._raise_if_exited()
        assert self._client is not None
        try:
            response = self._client.get("/-/ready", timeout=0.5)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process and wait for it; the port is free when this returns."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # HTTP API
    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` member of a ``"status": "success"`` answer."""
        self._raise_if_exited()
        assert self._client is not None
        response = self._client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert response.status_code == 200 and body.get("status") == "success", (
            f"GET /api/v1/{path} {params}: {response.status_code} {body}"
        )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query now: ``[{"metric": {...}, "value": [ts, "1"]}, ...]``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Every active alert: ``{"labels", "annotations", "state", "activeAt", "value"}``."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrometheusServer {self.url} {state}>"


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if found is None:
        pytest.fail(
            "promtool not found on PATH or at /usr/bin/promtool. It is required, not optional: "
            "install the Debian package that ships it and run the tests again:\n"
            "    apt-get update && apt-get install -y prometheus && "
            ".venv/bin/pytest tests/project/test_ops_bundle.py"
        )
    return found
