"""Run the real ``regmon run`` service as a subprocess and talk to it over HTTP.

    svc = RegmonProcess(WATCH_YAML, tmp_path)      # writes regmon.yaml, starts, waits for /readyz
    svc.get("/api/v1/images").json()
    svc.events()                                   # /api/v1/events, oldest first
    svc.metrics()[("regmon_watched_images", frozenset())]
    svc.send_hup(); svc.stop()                     # SIGTERM, asserts exit code 0
    svc.start()                                    # again: same config file, database and port
    RegmonProcess(..., nofile=1024)                # the service under RLIMIT_NOFILE 1024/1024

The config is YAML text (or a path to a YAML file, read as text); the helper
adds ``database: sqlite:///<tmp>/regmon.db`` and ``listen: 127.0.0.1:<free port>``
unless the text sets them itself (``svc.database`` is the URL in force either way).
``write_config(text)`` rewrites the file the same way (for reload tests). stdout
and stderr go to ``<tmp>/regmon.log``; every failure message includes that log.
Call ``close()`` (a fixture finalizer does) to kill whatever is still running.

    make = RegmonFactory(tmp_path)                 # the ``regmon_factory`` fixture
    leader = make(config_text, "a")                # started in tmp_path / "a"
    make.close()                                   # every one killed (a SIGSTOPped one too)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .faults import free_port
from .wait import wait_for

__all__ = ["MetricKey", "RegmonFactory", "RegmonProcess", "cli_env", "metric_key", "run_cli"]

MetricKey = tuple[str, frozenset[tuple[str, str]]]

_TOP_KEY = re.compile(r"^(database|listen)\s*:", re.MULTILINE)
_TOP_KEY_LISTEN = re.compile(r"^listen\s*:", re.MULTILINE)
_DATABASE = re.compile(r"^database\s*:\s*(\S+)\s*$", re.MULTILINE)


def metric_key(name: str, **labels: str) -> MetricKey:
    """The key ``RegmonProcess.metrics()`` uses for one sample."""
    return name, frozenset(labels.items())


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a regmon subprocess: no docker credentials of the host."""
    env = {**os.environ, **(extra or {})}
    env["DOCKER_CONFIG"] = "/nonexistent-regmon-test"
    env.pop("DOCKER_AUTH_CONFIG", None)
    return env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m monitor ARGS`` to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
        check=False,
    )


class RegmonProcess:
    """One ``python -m monitor run --config FILE`` subprocess on loopback."""

    def __init__(
        self,
        config: str | Path,
        tmp_path: Path,
        *,
        start: bool = True,
        ready_timeout: float = 30.0,
        nofile: int | None = None,
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.config_path = self.tmp_path / "regmon.yaml"
        self.db_path = self.tmp_path / "regmon.db"
        self.database = f"sqlite:///{self.db_path}"
        self.log_path = self.tmp_path / "regmon.log"
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the process, if set
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # Idle connections dropped after 2 s, before uvicorn's 5 s keep-alive timeout can
        # close one as the next request goes out on it (seen on CI: a test that polled
        # only its receivers for 5 s got "connection reset by peer" from the service).
        self._client = httpx.Client(
            base_url=self.url, timeout=10.0, limits=httpx.Limits(keepalive_expiry=2.0)
        )
        text = config.read_text(encoding="utf-8") if isinstance(config, Path) else config
        self._text = text
        self.write_config(text)
        if start:
            self.start()

    # -- config ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self, text: str) -> str:
        """``text`` with this instance's database and listen address added where absent."""
        present = {match.group(1) for match in _TOP_KEY.finditer(text)}
        if given := _DATABASE.search(text):
            self.database = given.group(1).strip("'\"")  # what the tests read the store with
        header = []
        if "database" not in present:
            header.append(f"database: sqlite:///{self.db_path}")
        if "listen" not in present:
            header.append(f"listen: 127.0.0.1:{self.port}")
        return "\n".join([*header, text])

    def write_config(self, text: str, *, keep_mtime: bool = False) -> None:
        """(Re)write the config; ``keep_mtime`` restores the old mtime (for SIGHUP-only reloads)."""
        old = self.config_path.stat() if keep_mtime and self.config_path.exists() else None
        self._text = text
        self.config_path.write_text(self.config_text(text), encoding="utf-8")
        if old is not None:
            os.utime(self.config_path, ns=(old.st_atime_ns, old.st_mtime_ns))

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the service and wait until ``/readyz`` answers 200.

        A port of ours that was taken between ``free_port()`` and the service's bind (by
        any process on the machine binding one too) is swapped for a new one, twice at most.
        """
        for _ in range(2):
            began = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start()
            except AssertionError:
                if not self._lost_port(began):
                    raise
            self._close_log()
            self.port = free_port()
            self._client.base_url = httpx.URL(self.url)
            self.write_config(self._text)
        return self._start()

    def _lost_port(self, since: int) -> bool:
        """Whether the start that logged from byte ``since`` on failed on our port alone."""
        if _TOP_KEY_LISTEN.search(self._text) or self.running:
            return False  # the test's own listen address: its failure is the test's to see
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return f"listen 127.0.0.1:{self.port}: Address already in use" in text

    def _start(self) -> Self:
        assert not self.running, "already running"
        self._log = self.log_path.open("ab")
        self._log.write(f"--- regmon run --config {self.config_path}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=cli_env(),
            preexec_fn=None if self.nofile is None else self._limit_files,
        )
        try:
            wait_for(self._ready, timeout=self.ready_timeout, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(
                f"regmon /readyz at {self.url}: {exc}\n{self.log_tail()}"
            ) from None
        return self

    def _limit_files(self) -> None:
        import resource

        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _ready(self) -> bool:
        self.assert_alive()
        try:
            response = self._client.get("/readyz", timeout=1.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def assert_alive(self) -> None:
        """Fail with the log when the process has exited."""
        assert self._proc is not None, "not started"
        code = self._proc.poll()
        if code is not None:
            raise AssertionError(f"regmon exited with {code}\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> float:
        """SIGTERM, wait, assert exit code 0; returns the seconds the stop took."""
        proc = self._proc
        assert proc is not None, "not started"
        began = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"regmon did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
            ) from None
        finally:
            self._close_log()
        took = time.monotonic() - began
        assert code == 0, f"regmon exited with {code} after SIGTERM\n{self.log_tail()}"
        return took

    def kill(self) -> None:
        """SIGKILL (no drain, no flush) and wait."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_log()

    def send_hup(self) -> None:
        self.assert_alive()
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)

    def close(self) -> None:
        """Kill a process still running and release the HTTP client (fixture finalizer)."""
        self.kill()
        self._client.close()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_text()
        cut = text[-chars:]
        return f"--- regmon log ({self.log_path}) ---\n{cut}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        self.assert_alive()
        return self._client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        self.assert_alive()
        return self._client.post(path, **kwargs)

    def json(self, path: str, **kwargs: Any) -> Any:
        response = self.get(path, **kwargs)
        assert response.status_code == 200, (
            f"GET {path} -> {response.status_code} {response.text[:500]}\n{self.log_tail()}"
        )
        return response.json()

    def events(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v1/events`` (query ``params`` as given), oldest first."""
        events: list[dict[str, Any]] = self.json("/api/v1/events", params=params)["events"]
        return events

    def images(self) -> dict[str, dict[str, Any]]:
        """``GET /api/v1/images`` keyed by reference."""
        return {image["reference"]: image for image in self.json("/api/v1/images")["images"]}

    def image(self, ref: str) -> dict[str, Any]:
        image: dict[str, Any] = self.json(f"/api/v1/images/{ref}")
        return image

    def metrics(self) -> dict[MetricKey, float]:
        """Every sample of ``/metrics``: ``(sample name, frozenset(labels)) -> value``."""
        response = self.get("/metrics")
        assert response.status_code == 200, f"/metrics -> {response.status_code}"
        samples: dict[MetricKey, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegmonProcess {self.url} {state}>"


class RegmonFactory:
    """``regmon run`` processes owned by one test, each in a folder of its own under ``root``.

    ``make(config, name="svc", **options)`` is ``RegmonProcess(config, root / name, **options)``,
    started unless ``start=False``; ``close()`` kills every one still running, a frozen
    (SIGSTOPped) one continued first so that it can die, and one whose start failed too.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.started: list[RegmonProcess] = []

    def __call__(
        self, config: str | Path, name: str = "svc", *, start: bool = True, **options: Any
    ) -> RegmonProcess:
        proc = RegmonProcess(config, self.root / name, start=False, **options)
        self.started.append(proc)
        return proc.start() if start else proc

    def close(self) -> None:
        for proc in self.started:
            if proc.running:
                os.kill(proc.pid, signal.SIGCONT)
            proc.close()
