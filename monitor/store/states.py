"""Compare-and-set for tag states: the store, not a replica's memory, holds a tag's previous state.

Every state write names the version it read (``expected``; a tag never written
is at version 0) and the version it writes. Writes are serialised per
database (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level
advisory lock taken here), so the versions read at the start of the
transaction hold until it commits. A record whose expected version is stale is
refused, with every later record of the same tag in the batch (they were
evaluated on top of it). The lease epoch of a leader (issue 14) joins the same
condition in ``refused``: a write under a stale epoch is refused whole.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from sqlalchemy import Connection, bindparam, select, text

from monitor.store.models import tag_states as _TAG_STATES

__all__ = ["Guarded", "lock_states", "refused", "stored_versions"]

# Any constant: the one lock that serialises state writers on a PostgreSQL database.
_STATE_LOCK = 0x7265676D  # "regm"
_IN_CHUNK = 5000  # images per SELECT … IN: under every driver's parameter limit


class Guarded(Protocol):
    """What the guard needs of a record to write."""

    @property
    def image(self) -> str: ...
    @property
    def expected(self) -> int | None: ...  # None: written whatever the store holds
    @property
    def version(self) -> int: ...


def lock_states(conn: Connection) -> None:
    """Serialise state writers for the rest of this transaction (SQLite already is)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STATE_LOCK})


def stored_versions(conn: Connection, images: Collection[str]) -> dict[str, int]:
    """The stored version of each of ``images`` that has a row."""
    found: dict[str, int] = {}
    wanted = sorted(set(images))
    query = select(_TAG_STATES.c.image, _TAG_STATES.c.version).where(
        _TAG_STATES.c.image.in_(bindparam("images", expanding=True))
    )
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = conn.execute(query, {"images": wanted[start : start + _IN_CHUNK]})
        found.update({image: version for image, version in rows})
    return found


def refused(records: Sequence[Guarded], stored: Mapping[str, int]) -> set[int]:
    """Indexes of the records whose expected version is stale, in batch order."""
    current = dict(stored)
    stale_images: set[str] = set()
    out: set[int] = set()
    for index, record in enumerate(records):
        image = record.image
        if image in stale_images or (
            record.expected is not None and current.get(image, 0) != record.expected
        ):
            stale_images.add(image)
            out.add(index)
            continue
        current[image] = record.version
    return out
