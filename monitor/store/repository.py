"""Repository functions: every read and write of regmon's state, one transaction each.

Synchronous by design: the async service calls them through
``asyncio.to_thread`` with whole batches, so a batch of checks costs a handful
of statements, not one round trip per image. SQL stays portable (SQLite and
PostgreSQL); the only dialect-specific piece is the upsert, chosen by
``engine.dialect.name``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

import sqlalchemy.exc
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from monitor.domain import Evaluation, Reason, Status, TagState
from monitor.store.engine import SQLITE_BEGIN, StoreError, redact_url
from monitor.store.models import (
    Base,
    DeliveryAttemptModel,
    DeliveryModel,
    EventModel,
    HistoryModel,
    WatchModel,
)
from monitor.store.states import lock_states, refused, stored_versions
from monitor.wire import parse_timestamp

__all__ = [
    "HistoryRow",
    "Record",
    "Recorded",
    "UnknownEventError",
    "WatchLike",
    "WatchRow",
    "active_watches",
    "get_state",
    "history_for",
    "list_events",
    "load_states",
    "load_versioned_states",
    "prune",
    "record_evaluations",
    "sync_sources",
    "sync_watches",
]

_WATCHES: Table = Base.metadata.tables["watches"]
_TAG_STATES: Table = Base.metadata.tables["tag_states"]
_HISTORY: Table = Base.metadata.tables["history"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class UnknownEventError(StoreError, LookupError):
    """``since`` named an event id that is not (or no longer) in the store."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"unknown event id {event_id!r} (never written, or pruned)")


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


@dataclass(frozen=True, slots=True)
class Record:
    """One evaluation to write, prepared: a body and the channel names for each of its events.

    ``payloads`` and ``channels`` run parallel to ``evaluation.events``.
    ``expected`` is the version of the tag's state this evaluation was made on
    (0: never written); the write is refused when the store holds another
    (``monitor.store.states``). ``None`` writes whatever the store holds.
    ``version`` is the version the new state is stored with.
    """

    evaluation: Evaluation
    payloads: tuple[Mapping[str, Any], ...] = ()
    channels: tuple[tuple[str, ...], ...] = ()
    expected: int | None = None
    version: int = 0

    @property
    def image(self) -> str:
        return self.evaluation.state.image


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_evaluations`` wrote (event seqs in order) and what it refused.

    ``current`` holds, for each refused tag, the state and version the store
    has (absent: never written), read in the same transaction.
    """

    seqs: list[int] = field(default_factory=list)
    refused: tuple[Record, ...] = ()
    current: Mapping[str, tuple[TagState, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One change of a tag: decided status, and digests while present."""

    image: str
    recorded_at: datetime
    status: Status
    digest: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None


def _translated(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Translate SQLAlchemy errors into ``StoreError`` at the edge of the store."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            engine = args[0] if args and isinstance(args[0], Engine) else None
            where = f"database {redact_url(engine.url)}" if engine is not None else "database"
            orig = getattr(exc, "orig", None)
            cause = str(orig if orig is not None else exc).splitlines()[0]
            raise StoreError(f"{where}: {fn.__name__} failed: {cause}") from exc

    return wrapper


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn


def _upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str,
    columns: Sequence[str],
) -> None:
    """Insert ``rows``; where ``key`` already exists, update ``columns`` instead."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        conn.execute(
            lite.on_conflict_do_update(
                index_elements=[table.c[key]], set_={name: lite.excluded[name] for name in columns}
            ),
            list(rows),
        )
        return
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        conn.execute(
            pg.on_conflict_do_update(
                index_elements=[table.c[key]], set_={name: pg.excluded[name] for name in columns}
            ),
            list(rows),
        )
        return
    # Any other backend: find the existing keys, then one INSERT and one UPDATE executemany.
    existing = set(conn.scalars(select(table.c[key])))
    new = [row for row in rows if row[key] not in existing]
    old = [
        # bindparam names must not be column names in an UPDATE ... SET.
        {"_key": row[key], **{f"_v_{name}": row[name] for name in columns}}
        for row in rows
        if row[key] in existing
    ]
    if new:
        conn.execute(insert(table), new)
    if old:
        conn.execute(
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({name: bindparam(f"_v_{name}") for name in columns}),
            old,
        )


# --- watches -------------------------------------------------------------------------


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
    engine: Engine, by_source: Mapping[str, Sequence[WatchLike]], now: datetime
) -> None:
    """``sync_watches`` for several sources in ONE transaction: a reload is all or nothing."""
    with _write(engine) as conn:
        for source, watches in by_source.items():
            _sync_source(conn, source, watches, now)


def _sync_source(
    conn: Connection, source: str, watches: Sequence[WatchLike], now: datetime
) -> None:
    table = _WATCHES
    rows = [
        {
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
    ]
    configured = {row["image"] for row in rows}
    _upsert(
        conn,
        table,
        rows,
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
    )
    stored = conn.scalars(
        select(WatchModel.image).where(WatchModel.active.is_(True), WatchModel.source == source)
    )
    gone = [{"_image": image} for image in stored if image not in configured]
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


# --- tag states ----------------------------------------------------------------------

_STATE_COLUMNS = [c.name for c in _TAG_STATES.columns if c.name != "image"]


def _state_to_row(state: TagState, version: int) -> dict[str, Any]:
    return {
        "image": state.image,
        "status": _value(state.status),
        "decided_status": _value(state.decided_status),
        "digest": state.digest,
        "media_type": state.media_type,
        "platforms": dict(state.platforms),
        "reason": _value(state.reason),
        "detail": state.detail,
        "first_seen": state.first_seen,
        "last_checked": state.last_checked,
        "last_decided": state.last_decided,
        "last_changed": state.last_changed,
        "consecutive_misses": state.consecutive_misses,
        "consecutive_errors": state.consecutive_errors,
        "missing_alerted": state.missing_alerted,
        "failing_alerted": state.failing_alerted,
        "digest_changes": state.digest_changes,
        "version": version,
    }


def _row_to_state(row: Row[Any]) -> TagState:
    return TagState(
        image=row.image,
        status=Status(row.status) if row.status is not None else None,
        decided_status=Status(row.decided_status) if row.decided_status is not None else None,
        digest=row.digest,
        media_type=row.media_type,
        platforms=dict(row.platforms),
        reason=Reason(row.reason) if row.reason is not None else None,
        detail=row.detail,
        first_seen=row.first_seen,
        last_checked=row.last_checked,
        last_decided=row.last_decided,
        last_changed=row.last_changed,
        consecutive_misses=row.consecutive_misses,
        consecutive_errors=row.consecutive_errors,
        missing_alerted=row.missing_alerted,
        failing_alerted=row.failing_alerted,
        digest_changes=row.digest_changes,
    )


def _value(member: Status | Reason | None) -> str | None:
    return None if member is None else member.value


@_translated
def load_states(engine: Engine) -> dict[str, TagState]:
    """Every stored TagState, by image."""
    with engine.connect() as conn:
        return {row.image: _row_to_state(row) for row in conn.execute(select(_TAG_STATES))}


@_translated
def load_versioned_states(
    engine: Engine, images: Collection[str] | None = None
) -> dict[str, tuple[TagState, int]]:
    """Stored TagStates with their versions, by image (all, or those of ``images``)."""
    with engine.connect() as conn:
        return _versioned(conn, images)


def _versioned(conn: Connection, images: Collection[str] | None) -> dict[str, tuple[TagState, int]]:
    query = select(_TAG_STATES)
    if images is not None:
        query = query.where(_TAG_STATES.c.image.in_(sorted(set(images))))
    return {row.image: (_row_to_state(row), row.version) for row in conn.execute(query)}


@_translated
def get_state(engine: Engine, image: str) -> TagState | None:
    with engine.connect() as conn:
        row = conn.execute(select(_TAG_STATES).where(_TAG_STATES.c.image == image)).one_or_none()
        return None if row is None else _row_to_state(row)


# --- the write path ------------------------------------------------------------------


# Upper bound on rows per multi-row INSERT; the dialect's parameter limit cuts lower.
_EVENTS_PAGE_SIZE = 10_000


@_translated
def record_evaluations(
    engine: Engine,
    records: Sequence[Record],
    *,
    now: datetime | None = None,
) -> Recorded:
    """Write a batch of prepared evaluations in ONE transaction.

    Writes the upserted tag states, a history row per ``changed`` evaluation, an
    events row per event (with its prepared body) and a pending delivery per
    channel name. Either all of it is written or none. A record whose expected
    version is stale is not written (nor its history, events, deliveries): it is
    returned in ``refused`` with the store's current state of its tag.
    """
    if not records:
        return Recorded()
    now = now or datetime.now(UTC)
    with _write(engine) as conn:
        if any(record.expected is not None for record in records):
            lock_states(conn)
            stale = refused(records, stored_versions(conn, {r.image for r in records}))
        else:
            stale = set()
        accepted = [record for index, record in enumerate(records) if index not in stale]
        seqs = _insert_records(conn, accepted, now)
        rejected = tuple(records[index] for index in sorted(stale))
        current = _versioned(conn, {r.image for r in rejected}) if rejected else {}
    return Recorded(seqs, rejected, current)


def _insert_records(conn: Connection, records: Sequence[Record], now: datetime) -> list[int]:
    states: dict[str, dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    webhooks: list[tuple[str, str]] = []
    for record in records:
        evaluation = record.evaluation
        if len(record.payloads) != len(evaluation.events) or len(record.channels) not in (
            0,
            len(evaluation.events),
        ):
            raise ValueError(f"{evaluation.state.image}: one payload (and channels) per event")
        state = evaluation.state
        # The last evaluation of an image wins.
        states[state.image] = _state_to_row(state, record.version)
        if evaluation.changed:
            history.append(_history_row(evaluation, now))
        for index, ev in enumerate(evaluation.events):
            events.append(
                {
                    "id": ev.id,
                    "type": ev.type.value,
                    "image": ev.image,
                    "occurred_at": ev.occurred_at,
                    "payload": dict(record.payloads[index]),
                    "created_at": now,
                }
            )
            if record.channels:
                webhooks.extend((ev.id, name) for name in record.channels[index])

    seq_by_id: dict[str, int] = {}
    _upsert(conn, _TAG_STATES, list(states.values()), "image", _STATE_COLUMNS)
    if history:
        conn.execute(insert(HistoryModel), history)
    if events:
        # RETURNING through SQLAlchemy's "insertmanyvalues": multi-row INSERTs, as many
        # rows each as the driver's parameter limit allows (~5,000 here).
        result = conn.execute(
            insert(EventModel).returning(EventModel.seq, EventModel.id),
            events,
            execution_options={"insertmanyvalues_page_size": _EVENTS_PAGE_SIZE},
        )
        seq_by_id = {event_id: seq for seq, event_id in result}
    if webhooks:
        conn.execute(
            insert(DeliveryModel),
            [
                {
                    "event_seq": seq_by_id[event_id],
                    "webhook": name,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for event_id, name in webhooks
            ],
        )
    return sorted(seq_by_id.values())


def _history_row(evaluation: Evaluation, now: datetime) -> dict[str, Any]:
    state = evaluation.state
    status = state.decided_status or state.status
    present = status is Status.PRESENT
    return {
        "image": state.image,
        "recorded_at": state.last_decided or state.last_checked or now,
        "status": _value(status) or "",
        # A digest belongs to a history row only while the tag is present: TagState keeps
        # the last digest seen across a missing spell, the history must not repeat it.
        "digest": state.digest if present else None,
        "platforms": dict(state.platforms) if present else {},
        "event_id": evaluation.events[0].id if evaluation.events else None,
    }


# --- reads ---------------------------------------------------------------------------


@_translated
def history_for(engine: Engine, image: str) -> list[HistoryRow]:
    """The changes of one tag, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_HISTORY).where(_HISTORY.c.image == image).order_by(_HISTORY.c.id)
        )
        return [
            HistoryRow(
                image=row.image,
                recorded_at=row.recorded_at,
                status=Status(row.status),
                digest=row.digest,
                platforms=dict(row.platforms),
                event_id=row.event_id,
            )
            for row in rows
        ]


@_translated
def list_events(
    engine: Engine,
    *,
    since: str | datetime | None = None,
    types: Sequence[str] | None = None,
    image: str | None = None,
    limit: int = 1000,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Event payloads (SPEC §6 body), oldest first.

    ``newest=True`` returns the *last* ``limit`` matching events (still oldest
    first), for timelines of one tag; the default pages forward from ``since``.

    ``since`` is an event id (the events written after it) or an aware datetime
    or RFC 3339 string (events that occurred after it). An id that is not stored
    raises ``UnknownEventError``.
    """
    order = EventModel.seq.desc() if newest else EventModel.seq
    query = select(EventModel.payload).order_by(order).limit(limit)
    if types:
        query = query.where(EventModel.type.in_(list(types)))
    if image is not None:
        query = query.where(EventModel.image == image)
    with engine.connect() as conn:
        if isinstance(since, str):
            since = _parse_time(since) or since
        if isinstance(since, datetime):
            query = query.where(EventModel.occurred_at > since)
        elif since is not None:
            seq = conn.scalar(select(EventModel.seq).where(EventModel.id == since))
            if seq is None:
                raise UnknownEventError(since)
            query = query.where(EventModel.seq > seq)
        payloads = [dict(payload) for payload in conn.scalars(query)]
    return payloads[::-1] if newest else payloads


def _parse_time(value: str) -> datetime | None:
    """An RFC 3339 time with an offset, else None (the string is an event id)."""
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


# --- retention -----------------------------------------------------------------------


@_translated
def prune(engine: Engine, older_than: datetime) -> int:
    """Delete events (with their deliveries) and history older than ``older_than``.

    Each tag keeps its latest history row however old, so its last known state
    stays visible. Returns the number of rows deleted.
    """
    old_events = select(EventModel.seq).where(EventModel.occurred_at < older_than)
    old_deliveries = select(DeliveryModel.id).where(DeliveryModel.event_seq.in_(old_events))
    latest_history = select(func.max(HistoryModel.id)).group_by(HistoryModel.image)
    deleted = 0
    with _write(engine) as conn:
        # Children first: no reliance on ON DELETE CASCADE being enforced.
        for stmt in (
            delete(DeliveryAttemptModel).where(
                DeliveryAttemptModel.delivery_id.in_(old_deliveries)
            ),
            delete(DeliveryModel).where(DeliveryModel.event_seq.in_(old_events)),
            delete(EventModel).where(EventModel.occurred_at < older_than),
            delete(HistoryModel).where(
                HistoryModel.recorded_at < older_than, HistoryModel.id.not_in(latest_history)
            ),
        ):
            deleted += conn.execute(stmt).rowcount
    return deleted
