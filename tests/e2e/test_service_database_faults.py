"""A database that cannot be written: locked, full, empty. The real service, from outside.

While writes fail the service stays up: ``/readyz`` is 503, ``regmon_database_up``
is 0, ``POST …/check`` answers 503 with one line at once, the log says it once
and then at a backoff (no traceback, no SQL), and what was not written is kept
and written when the database is back. SIGTERM during the fault is bounded and
says what was lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.faults import free_port
from support.images import ImagePusher
from support.registry import RegistryServer
from support.service import RegmonProcess, metric_key
from support.wait import wait_for

TOKEN = "faults-t0ken-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The writer's retries while one fault lasts (~10-20 s here): the first line, then one
# per backoff step (0.4 s doubling to 30 s), so a handful; 0.2 s retries would be ~100.
MAX_FAILURE_LINES = 12


def config(ref: str, registry: RegistryServer, database: Path | None = None) -> str:
    head = f"database: sqlite:///{database}\n" if database else ""
    return (
        head
        + f"api_token: {TOKEN}\n"
        + "defaults: {interval: 1s, jitter: 0%}\n"
        + f"registries:\n  '{registry.host}': {{timeout: 2s}}\n"
        + f"watch:\n  - image: {ref}\n"
    )


@pytest.fixture
def svc_factory(tmp_path: Path) -> Iterator[Callable[[str], RegmonProcess]]:
    started: list[RegmonProcess] = []

    def make(text: str) -> RegmonProcess:
        proc = RegmonProcess(text, tmp_path / "svc")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (the test runs as root, as the suite does); unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def database_up(svc: RegmonProcess) -> float:
    return svc.metrics()[metric_key("regmon_database_up")]


def ready(svc: RegmonProcess) -> bool:
    return svc.get("/readyz").status_code == 200


def failure_lines(svc: RegmonProcess) -> list[str]:
    return [line for line in svc.log_text().splitlines() if "database write failed" in line]


def check_now_unavailable(svc: RegmonProcess, ref: str, reason: str) -> None:
    """POST …/check answers 503 at once with one line naming ``reason``."""
    began = time.monotonic()
    answer = svc.post(f"/api/v1/images/{ref}/check", headers=AUTH)
    took = time.monotonic() - began
    assert answer.status_code == 503, f"{answer.status_code} {answer.text}\n{svc.log_tail()}"
    message = answer.json()["error"]
    assert message.startswith("database unavailable: "), message
    assert reason in message, message
    assert "\n" not in message and "INSERT" not in message and "UPDATE" not in message, message
    assert answer.headers["retry-after"] == "30"
    # The registry answers in ms; the answer must not wait for a busy timeout (5 s).
    assert took < 3, f"POST …/check took {took:.1f}s"


def test_a_locked_database_is_503_not_ready_and_written_once_unlocked(
    svc_factory: Callable[[str], RegmonProcess],
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("locked")
    ref = f"{registry.host}/{repo}:v1"
    pusher.push_image(repo, "v1", seed="one")
    svc = svc_factory(config(ref, registry))
    wait_for(lambda: svc.images()[ref]["status"] == "present", message="baseline")
    assert database_up(svc) == 1

    holder = sqlite3.connect(svc.db_path, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        changed = pusher.push_image(repo, "v1", seed="two")  # an event waits to be written
        # Not ready once a write has waited 3 s; down once it gave up (busy timeout, 5 s).
        wait_for(lambda: not ready(svc), timeout=20, message=f"/readyz 503\n{svc.log_tail()}")
        wait_for(lambda: database_up(svc) == 0, timeout=20, message=f"down\n{svc.log_tail()}")
        assert not ready(svc)
        check_now_unavailable(svc, ref, "database is locked")
        # Reads still work: the API serves the state in memory.
        assert svc.images()[ref]["digest"] == changed.digest
        assert svc.get("/healthz").status_code == 200
        # Long enough for a few retries at the backoff.
        wait_for(lambda: len(failure_lines(svc)) >= 3, timeout=30, message="retries")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    wait_for(lambda: ready(svc), timeout=40, message=f"/readyz 200 again\n{svc.log_tail()}")
    assert database_up(svc) == 1
    events = svc.events()
    assert [e["type"] for e in events] == ["tag.changed"], events
    assert events[0]["current"]["digest"] == changed.digest
    ok = svc.post(f"/api/v1/images/{ref}/check", headers=AUTH)
    assert ok.status_code == 200, ok.text

    log = svc.log_text()
    assert "Traceback" not in log, svc.log_tail()
    assert "INSERT" not in log and "UPDATE" not in log, svc.log_tail()
    lines = failure_lines(svc)
    assert 3 <= len(lines) <= MAX_FAILURE_LINES, "\n".join(lines)
    assert "database write failed: database is locked; " in lines[0], lines[0]
    assert re.search(r"database writable again after \d+s: wrote \d+ pending results", log)
    svc.stop()


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full (unbuffered: every byte that fits lands)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_a_full_disk_is_503_not_ready_keeps_results_and_sigterm_says_what_was_lost(
    svc_factory: Callable[[str], RegmonProcess],
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tiny_fs: Path,
) -> None:
    repo = unique_repo("full")
    ref = f"{registry.host}/{repo}:v1"
    pusher.push_image(repo, "v1", seed="one")
    db = tiny_fs / "regmon.db"
    svc = svc_factory(config(ref, registry, db))
    wait_for(lambda: svc.images()[ref]["status"] == "present", message="baseline")

    def fill_up() -> None:
        # A checkpoint first: the WAL's own space must not be what the next write reuses.
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fill(tiny_fs / "filler")

    fill_up()
    changed = pusher.push_image(repo, "v1", seed="two")
    wait_for(lambda: database_up(svc) == 0, timeout=20, message=f"database down\n{svc.log_tail()}")
    assert not ready(svc)
    check_now_unavailable(svc, ref, "database or disk is full")
    wait_for(lambda: len(failure_lines(svc)) >= 3, timeout=30, message="retries")
    assert "writable again" not in svc.log_text(), svc.log_tail()  # failing, not flapping
    assert svc.images()[ref]["digest"] == changed.digest

    # Space comes back: what waited is written.
    (tiny_fs / "filler").unlink()
    wait_for(lambda: ready(svc), timeout=40, message=f"/readyz 200 again\n{svc.log_tail()}")
    assert database_up(svc) == 1
    assert [e["type"] for e in svc.events()] == ["tag.changed"]

    # Full again, with one more event pending: SIGTERM is bounded and counts the loss.
    fill_up()
    third = pusher.push_image(repo, "v1", seed="three")
    wait_for(lambda: database_up(svc) == 0, timeout=20, message=f"down again\n{svc.log_tail()}")
    wait_for(lambda: svc.images()[ref]["digest"] == third.digest, message="the change is seen")
    took = svc.stop(timeout=30)
    assert took < 20, f"stop took {took:.1f}s"
    log = svc.log_text()
    lost = re.findall(
        r"regmon stopping: (\d+) check results \((\d+) events\) could not be written to the "
        r"database and are lost: database or disk is full",
        log,
    )
    assert len(lost) == 1 and lost[0][1] == "1", svc.log_tail()
    assert int(lost[0][0]) >= 1
    assert log.rstrip().endswith("regmon stopped"), svc.log_tail()
    assert "Traceback" not in log, svc.log_tail()
    assert "INSERT" not in log and "UPDATE" not in log, svc.log_tail()


def test_an_empty_database_file_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "regmon.db"
    db.touch()
    config = tmp_path / "regmon.yaml"
    config.write_text(f"database: sqlite:///{db}\nlisten: 127.0.0.1:{free_port()}\nwatch: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"regmon: database sqlite:///{db} is an empty (0-byte) file, not a regmon database; "
        "restore it from a backup, or run `regmon db upgrade` to start a new database in it"
    ]
    assert db.stat().st_size == 0  # untouched

    # The way out it names works: db upgrade makes it a new database, run accepts it.
    upgraded = subprocess.run(
        [sys.executable, "-m", "monitor", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert db.stat().st_size > 0


def test_a_database_corrupted_while_running_is_not_ready_and_503(
    svc_factory: Callable[[str], RegmonProcess],
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("corrupt")
    ref = f"{registry.host}/{repo}:v1"
    pusher.push_image(repo, "v1", seed="one")
    svc = svc_factory(config(ref, registry))
    wait_for(lambda: svc.images()[ref]["status"] == "present", message="baseline")
    with sqlite3.connect(svc.db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # Every page overwritten (a bad restore, a disk gone wrong): nothing readable is left.
    size = svc.db_path.stat().st_size
    with svc.db_path.open("r+b") as db:
        db.write(b"\xa5" * size)
    wait_for(lambda: not ready(svc), timeout=20, message=f"/readyz 503\n{svc.log_tail()}")
    wait_for(lambda: database_up(svc) == 0, timeout=20, message=f"down\n{svc.log_tail()}")
    answer = svc.post(f"/api/v1/images/{ref}/check", headers=AUTH)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"].startswith("database unavailable: "), answer.text
    assert svc.get("/healthz").status_code == 200
    took = svc.stop(timeout=30)
    assert took < 20, f"stop took {took:.1f}s"
    log = svc.log_text()
    assert "Traceback" not in log, svc.log_tail()
    assert len(failure_lines(svc)) <= MAX_FAILURE_LINES, svc.log_tail()


def test_on_a_full_small_volume_every_event_is_delivered_once_when_some_space_returns(
    svc_factory: Callable[[str], RegmonProcess],
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tiny_fs: Path,
) -> None:
    from support.receiver import WebhookReceiver

    secret = "whsec_C2VjcmV0LWZvci1yZWdtb24tZnVsbC10ZXN0cw=="
    repo = unique_repo("wal")
    refs = [f"{registry.host}/{repo}:t{i}" for i in range(20)]
    for i in range(20):
        pusher.push_image(repo, f"t{i}", seed=f"one-{i}")
    db = tiny_fs / "regmon.db"
    with WebhookReceiver(secret) as rx:
        svc = svc_factory(
            f"database: sqlite:///{db}\n"
            "defaults: {interval: 1s, jitter: 0%}\n"
            f"webhooks:\n  - {{name: ops, url: '{rx.url}', secret: '{secret}'}}\n"
            "watch:\n" + "".join(f"  - image: {ref}\n" for ref in refs)
        )
        wait_for(
            lambda: all(i["status"] == "present" for i in svc.images().values()),
            message="baseline",
        )
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fill(tiny_fs / "filler")
        for i in range(20):
            pusher.push_image(repo, f"t{i}", seed=f"two-{i}")
        wait_for(lambda: database_up(svc) == 0, timeout=20, message=f"down\n{svc.log_tail()}")
        # A little space comes back (less than SQLite's default WAL of 4 MiB).
        filler = tiny_fs / "filler"
        os.truncate(filler, max(filler.stat().st_size - 768 * 1024, 0))

        def all_delivered() -> bool:
            svc.assert_alive()
            return len(rx.delivered()) >= 20

        wait_for(all_delivered, timeout=60, message=f"20 deliveries\n{svc.log_tail()}")
        events = svc.events()
        assert [e["type"] for e in events] == ["tag.changed"] * 20
        assert sorted(rx.delivered_ids()) == sorted(e["id"] for e in events)
        assert len(rx.attempts) == 20
        svc.stop(timeout=30)
    assert "Traceback" not in svc.log_text(), svc.log_tail()
