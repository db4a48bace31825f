"""Run a real Alertmanager (Debian ``prometheus-alertmanager`` 0.25) on loopback, and a receiver.

    with AlertReceiver() as rx, AlertmanagerServer(tmp_path, config) as am:
        am.url                      # give it to Prometheus's alerting config
        rx.url                      # http://127.0.0.1:PORT/alertmanager, for webhook_configs
        rx.notifications()          # every webhook body received, in arrival order

Clustering is off (``--cluster.listen-address=``), so nothing binds 9094; the
storage is under ``workdir`` and the log is kept in ``workdir/alertmanager.log``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import pytest
import yaml

from .faults import LoopbackHTTPServer, RecordedRequest, Reply, free_port
from .wait import wait_for

__all__ = ["ALERTMANAGER_BINARY", "AlertReceiver", "AlertmanagerServer"]

ALERTMANAGER_BINARY = Path("/usr/bin/prometheus-alertmanager")


class AlertReceiver(LoopbackHTTPServer):
    """Answers 200 to Alertmanager's webhook and keeps each body with its arrival time."""

    path = "/alertmanager"

    def __init__(self) -> None:
        super().__init__()
        self._bodies: list[tuple[float, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}{self.path}"

    def respond(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply(404)
        with self._lock:
            self._bodies.append((time.monotonic(), json.loads(request.body)))
        return Reply(200, [("Content-Type", "text/plain")], b"ok")

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for _, body in self._bodies]

    def last_at(self) -> float | None:
        with self._lock:
            return self._bodies[-1][0] if self._bodies else None


class AlertmanagerServer:
    """One ``prometheus-alertmanager`` subprocess with its own config, storage and port."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.workdir / "alertmanager.log"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 20.0) -> Self:
        if not ALERTMANAGER_BINARY.exists():
            pytest.fail(
                f"{ALERTMANAGER_BINARY} is missing: install the Debian package "
                "prometheus-alertmanager (scripts/test does), then rerun the tests.",
                pytrace=False,
            )
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                str(ALERTMANAGER_BINARY),
                f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                self._ready, timeout=timeout, interval=0.05, message=f"alertmanager {self.url}"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"alertmanager exited with {self._proc.returncode}:\n{self.read_log()}"
            )
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
        except httpx.TransportError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: what Alertmanager holds, with ``status.inhibitedBy``."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0)
        assert response.status_code == 200, response.text
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
