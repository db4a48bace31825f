"""SQLite means one replica: ``regmon run`` holds an exclusive lock on ``<database>.lock``.

Two services on one SQLite file would both check every tag and deliver every
webhook. An ``flock`` on a sidecar file (not on the database itself, whose
locks SQLite owns) is held for the life of the process and released by the
kernel when it ends, however it ends: no stale lock after a crash or SIGKILL.
The file holds the pid of its holder, so the refusal can name it. It is never
deleted: a second process could otherwise lock a new file of the same name
while the first still holds the old one.

Readers (``status``, ``history``, the API of the running service) do not take
it; SQLite's WAL lets them read while the service writes.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitor.store.engine import StoreError

__all__ = ["DatabaseInUse", "ProcessLock", "hold_sqlite_lock", "sqlite_lock_path"]


class DatabaseInUse(StoreError):
    """Another process holds the SQLite database's lock file."""


def sqlite_lock_path(url: str) -> Path | None:
    """``<database>.lock`` for a SQLite file URL; None for a server or an in-memory database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    return Path(database).resolve().with_name(Path(database).name + ".lock")


class ProcessLock:
    """An exclusive, non-blocking ``flock`` on ``path``, released by ``release()`` or exit."""

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self._database = database
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; ``DatabaseInUse`` naming the holder's pid if another process has it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                f"database {self._database}: cannot open {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f"another regmon run (pid {holder})" if holder else "another regmon run"
            raise DatabaseInUse(
                f"database {self._database} is in use by {by}: SQLite means one replica; "
                "stop that one first, or use PostgreSQL to run more than one"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(
                f"database {self._database}: cannot lock {self.path}: {exc.strerror or exc}"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def hold_sqlite_lock(url: str) -> ProcessLock | None:
    """The held lock of a SQLite file database (None for other databases)."""
    path = sqlite_lock_path(url)
    if path is None:
        return None
    lock = ProcessLock(path, str(path.with_suffix("")) if path.suffix == ".lock" else url)
    lock.acquire()
    return lock
