"""Watches as stored: each watch source's watches synced, the active ones read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, Engine, bindparam, select, update

from monitor.store.models import watches as _WATCHES
from monitor.store.transactions import _translated, _upsert, _write

__all__ = ["WatchLike", "WatchRow", "active_watches", "sync_sources", "sync_watches"]


class WatchLike(Protocol):
    """What ``sync_watches`` needs of a configured watch."""

    @property
    def image(self) -> str: ...
    @property
    def registry(self) -> str: ...
    @property
    def repository(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def interval_seconds(self) -> float | None: ...
    @property
    def cron(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WatchRow:
    """One active watch as stored."""

    image: str
    registry: str
    repository: str
    tag: str
    interval_seconds: float | None
    cron: str | None
    created_at: datetime
    source: str = "config"


@_translated
def sync_watches(
    engine: Engine, watches: Sequence[WatchLike], now: datetime, *, source: str = "config"
) -> None:
    """Make the stored watches of one watch source match what it yields now.

    Its watches are inserted or updated (and taken over, when another source had
    the image before) and (re)activated; stored watches of that source it no
    longer yields are marked inactive, never deleted, so their history stays.
    Other sources' watches are left as they are.
    """
    with _write(engine) as conn:
        _sync_source(conn, source, watches, now)


@_translated
def sync_sources(
    engine: Engine,
    by_source: Mapping[str, Sequence[WatchLike]],
    now: datetime,
    *,
    exclusive: bool = False,
) -> None:
    """``sync_watches`` for several sources in ONE transaction: a reload is all or nothing.

    ``exclusive``: these are all the sources there are; the active watches of any other
    (a ``sources:`` entry since removed) are made inactive too.
    """
    with _write(engine) as conn:
        for source, watches in by_source.items():
            _sync_source(conn, source, watches, now)
        if exclusive:
            conn.execute(
                update(_WATCHES)
                .where(_WATCHES.c.active.is_(True), _WATCHES.c.source.not_in(list(by_source)))
                .values(active=False, removed_at=now)
            )


def _sync_source(
    conn: Connection, source: str, watches: Sequence[WatchLike], now: datetime
) -> None:
    table = _WATCHES
    c = table.c
    stored = {
        row[0]: tuple(row[1:])
        for row in conn.execute(
            select(
                c.image, c.registry, c.repository, c.tag, c.interval_seconds, c.cron,
                c.source, c.active, c.removed_at.is_(None),
            )
        ).all()
    }  # fmt: skip
    # A restart writes only what changed: at 50,000 watches an upsert of every row
    # takes seconds, reading them a fraction of one.
    rows = {
        w.image: {
            "image": w.image,
            "registry": w.registry,
            "repository": w.repository,
            "tag": w.tag,
            "interval_seconds": w.interval_seconds,
            "cron": w.cron,
            "active": True,
            "created_at": now,
            "removed_at": None,
            "source": source,
        }
        for w in watches
    }
    changed = [
        row
        for image, row in rows.items()
        if stored.get(image)
        != (
            row["registry"], row["repository"], row["tag"], row["interval_seconds"],
            row["cron"], source, True, True,
        )
    ]  # fmt: skip
    _upsert(
        conn,
        table,
        changed,
        "image",
        [
            "registry",
            "repository",
            "tag",
            "interval_seconds",
            "cron",
            "active",
            "removed_at",
            "source",
        ],
        bulk=True,
    )
    gone = [
        {"_image": image}
        for image, (*_, owner, active, _removed) in stored.items()
        if active and owner == source and image not in rows
    ]
    if gone:
        conn.execute(
            update(table)
            .where(table.c.image == bindparam("_image"))
            .values(active=False, removed_at=now),
            gone,
        )


@_translated
def active_watches(engine: Engine) -> list[WatchRow]:
    """The active watches, by image."""
    with engine.connect() as conn:
        result = conn.execute(
            select(_WATCHES).where(_WATCHES.c.active.is_(True)).order_by(_WATCHES.c.image)
        )
        return [
            WatchRow(
                image=row.image,
                registry=row.registry,
                repository=row.repository,
                tag=row.tag,
                interval_seconds=row.interval_seconds,
                cron=row.cron,
                created_at=row.created_at,
                source=row.source,
            )
            for row in result
        ]
