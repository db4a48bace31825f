"""SQLAlchemy models: the schema as the code sees it.

``migrations/`` is the only way the schema changes; ``tests/store/test_migrations.py``
proves these models and the migrations describe the same tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from monitor.domain import DeliveryStatus

__all__ = [
    "DELIVERY_STATUSES",
    "NAMING_CONVENTION",
    "Base",
    "DeliveryAttemptModel",
    "DeliveryModel",
    "EventModel",
    "HistoryModel",
    "IdType",
    "LeaseModel",
    "RegistryStateModel",
    "TagStateModel",
    "UTCDateTime",
    "WatchModel",
]

# Deterministic constraint and index names, so migrations can name what they alter
# and the names are the same on SQLite and PostgreSQL.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DELIVERY_STATUSES = tuple(status.value for status in DeliveryStatus)

# BIGINT on PostgreSQL; plain INTEGER on SQLite, where only ``INTEGER PRIMARY KEY``
# is an alias of the rowid and autoincrements.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type: values are stored as naive UTC text and given
    ``tzinfo=UTC`` back on load. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; regmon stores UTC only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class WatchModel(Base):
    """One watched image as last configured; removed watches stay, inactive."""

    __tablename__ = "watches"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    image: Mapped[str] = mapped_column(String(512), unique=True)
    # ``registry`` is reserved on declarative classes; the column keeps the plain name.
    registry_name: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    cron: Mapped[str | None] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]
    # The watch source that produced it (``monitor.sources``); each source syncs its own.
    source: Mapped[str] = mapped_column(String(64), server_default="config")


class TagStateModel(Base):
    """``monitor.domain.TagState``, one row per image."""

    __tablename__ = "tag_states"

    image: Mapped[str] = mapped_column(String(512), primary_key=True)
    status: Mapped[str | None] = mapped_column(String(16))
    decided_status: Mapped[str | None] = mapped_column(String(16))
    digest: Mapped[str | None] = mapped_column(String(160))
    media_type: Mapped[str | None] = mapped_column(String(255))
    platforms: Mapped[dict[str, Any]]
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime | None]
    last_checked: Mapped[datetime | None]
    last_decided: Mapped[datetime | None]
    last_changed: Mapped[datetime | None]
    consecutive_misses: Mapped[int] = mapped_column(Integer)
    consecutive_errors: Mapped[int] = mapped_column(Integer)
    missing_alerted: Mapped[bool] = mapped_column(Boolean)
    failing_alerted: Mapped[bool] = mapped_column(Boolean)
    digest_changes: Mapped[int] = mapped_column(Integer)
    newer_version: Mapped[str | None] = mapped_column(String(128))
    # Compare-and-set: a write names the version it read, and is refused when it is stale.
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    # Its check.failing was covered by a registry.failing: so is its check.recovered.
    failing_covered: Mapped[bool] = mapped_column(Boolean, server_default=false())


class RegistryStateModel(Base):
    """``monitor.domain.RegistryState``, one row per registry that has had an outage."""

    __tablename__ = "registry_states"

    registry_name: Mapped[str] = mapped_column("registry", String(255), primary_key=True)
    failing: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class HistoryModel(Base):
    """One row per change of decided status, digest or platform digests."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    image: Mapped[str] = mapped_column(String(512), index=True)
    recorded_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str | None] = mapped_column(String(160))
    platforms: Mapped[dict[str, Any]]
    # The event the change caused, if any; not a foreign key, since events are
    # pruned on their own schedule.
    event_id: Mapped[str | None] = mapped_column(String(26))


class EventModel(Base):
    """One event; ``seq`` is the order, ``payload`` the SPEC §6 body."""

    __tablename__ = "events"
    # AUTOINCREMENT so a seq is never reused on SQLite, even after pruning the newest rows:
    # clients page with ``since=<id>``.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    seq: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(26), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(512), index=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class DeliveryModel(Base):
    """The webhook outbox: one row per (event, webhook)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in DELIVERY_STATUSES)),
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(
        IdType, ForeignKey("events.seq", ondelete="CASCADE"), index=True
    )
    webhook: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    claimed_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    # Set when the webhook's ``batch:`` window closed: the members are sent as one
    # delivery under this id (its ``webhook-id``), claimed and finished together.
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)


class DeliveryAttemptModel(Base):
    """One HTTP attempt of one delivery."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    latency_ms: Mapped[float | None] = mapped_column(Float)


class LeaseModel(Base):
    """A lease held by one replica (``monitor.store.lease``): the leader's is named ``leader``.

    ``expires_at`` is always set from the database's clock, never a replica's.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    # The fencing token: grows by one with each acquisition.
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
