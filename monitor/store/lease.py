"""The leader lease in the database, and the fence every write of the leader passes.

One row of ``leases`` (``name = 'leader'``) says which replica leads, under
which ``epoch``, until when. Every time is the database's clock (``now()``),
so replicas need not agree on theirs. PostgreSQL only: SQLite means one
replica (``monitor.store.lockfile``).

* ``acquire`` takes the lease when it has expired (or is already ours) and
  bumps the epoch; ``renew`` extends it while holder and epoch are unchanged;
  ``release`` ends it at once (a clean stop hands over without waiting).
* Fencing: a leader's engine carries a ``Fence`` (``fenced()``, an execution
  option read by the store's write transactions). The first statement of each
  write transaction reads the lease row ``FOR SHARE`` and refuses the whole
  transaction (``Fenced``) unless it is still this holder's, at this epoch,
  unexpired. The share lock stays until the commit, so a new leader's
  acquisition (``FOR UPDATE``) waits for the old leader's write in progress:
  every write of epoch N commits before epoch N+1 begins, and none after.

``now()`` is the start of the transaction, never later than the real time:
an acquisition that sees a lease expired sees it truly expired, and an expiry
written from it is never earlier than the moment the request was sent, which
is what the coordinator counts its lease from (``monitor.runtime.lease``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine, text

from monitor.store.engine import StoreError

__all__ = [
    "FENCE",
    "LEADER",
    "Fence",
    "Fenced",
    "Grant",
    "acquire",
    "check_fence",
    "fenced",
    "release",
    "renew",
]

LEADER: Final = "leader"
# Engine/connection execution option: the Fence that write transactions check first.
FENCE: Final = "regmon_fence"


class Fenced(StoreError):
    """A write under a lease this process no longer holds: nothing of it was written."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One attempt to acquire: ``epoch`` is ours when acquired (else None); ``holder`` and
    ``held_epoch`` are who held the lease before, under which epoch."""

    epoch: int | None
    holder: str
    held_epoch: int


def acquire(engine: Engine, holder: str, seconds: float, name: str = LEADER) -> Grant:
    """Take the lease for ``seconds`` if it is free (expired) or already ``holder``'s."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO leases (name, holder, epoch, acquired_at, expires_at) "
                "VALUES (:name, '', 0, now(), now()) ON CONFLICT (name) DO NOTHING"
            ),
            {"name": name},
        )
        row = conn.execute(
            text(
                "SELECT holder, epoch, expires_at <= now() AS free FROM leases "
                "WHERE name = :name FOR UPDATE"
            ),
            {"name": name},
        ).one()
        if not row.free and row.holder != holder:
            return Grant(None, str(row.holder), int(row.epoch))
        epoch = conn.execute(
            text(
                "UPDATE leases SET holder = :holder, epoch = epoch + 1, acquired_at = now(), "
                "expires_at = now() + make_interval(secs => :seconds) "
                "WHERE name = :name RETURNING epoch"
            ),
            {"name": name, "holder": holder, "seconds": seconds},
        ).scalar_one()
    return Grant(int(epoch), str(row.holder), int(row.epoch))


def renew(engine: Engine, holder: str, epoch: int, seconds: float, name: str = LEADER) -> bool:
    """Extend our lease to ``seconds`` from now; False when it is no longer ours at ``epoch``."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                "UPDATE leases SET expires_at = now() + make_interval(secs => :seconds) "
                "WHERE name = :name AND holder = :holder AND epoch = :epoch"
            ),
            {"name": name, "holder": holder, "epoch": epoch, "seconds": seconds},
        )
        return bool(result.rowcount == 1)


def release(engine: Engine, holder: str, epoch: int, name: str = LEADER) -> bool:
    """End our lease now, so another replica takes over without waiting for it to expire."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                "UPDATE leases SET expires_at = now() "
                "WHERE name = :name AND holder = :holder AND epoch = :epoch"
            ),
            {"name": name, "holder": holder, "epoch": epoch},
        )
        return bool(result.rowcount == 1)


def check_fence(conn: Connection, holder: str, epoch: int, name: str = LEADER) -> None:
    """Refuse this transaction (``Fenced``) unless the lease is ``holder``'s at ``epoch``;
    holds a share lock on the lease row until it ends."""
    held = conn.execute(
        text(
            "SELECT 1 FROM leases WHERE name = :name AND holder = :holder "
            "AND epoch = :epoch AND expires_at > now() FOR SHARE"
        ),
        {"name": name, "holder": holder, "epoch": epoch},
    ).first()
    if held is None:
        raise Fenced(f"not written: the lease epoch {epoch} is no longer this replica's")


class Fence:
    """What a leader's writes are checked against: ``current()`` gives ``(holder, epoch)``
    while this process leads, None when it does not (refused without asking the database)."""

    def __init__(self, current: Callable[[], tuple[str, int] | None]) -> None:
        self._current = current

    def check(self, conn: Connection) -> None:
        lead = self._current()
        if lead is None:
            raise Fenced("not written: this replica does not hold the lease")
        check_fence(conn, *lead)


def fenced(engine: Engine, fence: Fence) -> Engine:
    """``engine`` (same pool) whose write transactions pass ``fence`` first."""
    return engine.execution_options(**{FENCE: fence})
