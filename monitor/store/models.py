"""The tables: the schema as the code sees it, as SQLAlchemy Core ``Table``s on one ``metadata``.

Core, not the ORM: every query is Core, and ``sqlalchemy.orm`` costs the service some
6 MiB of memory and ~40 modules at start-up for nothing it uses.

``migrations/`` is the only way the schema changes; ``tests/store/test_migrations.py``
proves these tables and the migrations describe the same schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)

from monitor.records import DeliveryStatus

__all__ = [
    "DELIVERY_STATUSES",
    "NAMING_CONVENTION",
    "IdType",
    "UTCDateTime",
    "deliveries",
    "delivery_attempts",
    "events",
    "history",
    "leases",
    "metadata",
    "registry_states",
    "tag_states",
    "watches",
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


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id() -> Column[int]:
    return Column("id", IdType, primary_key=True, autoincrement=True)


# One watched image as last configured; removed watches stay, inactive.
watches = Table(
    "watches",
    metadata,
    _id(),
    Column("image", String(512), nullable=False, unique=True),
    Column("registry", String(255), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("interval_seconds", Float),
    Column("cron", String(128)),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("removed_at", UTCDateTime()),
    # The watch source that produced it (``monitor.sources``); each source syncs its own.
    Column("source", String(64), nullable=False, server_default="config"),
)

# ``monitor.domain.TagState``, one row per image.
tag_states = Table(
    "tag_states",
    metadata,
    Column("image", String(512), primary_key=True),
    Column("status", String(16)),
    Column("decided_status", String(16)),
    Column("digest", String(160)),
    Column("media_type", String(255)),
    Column("platforms", JSON(), nullable=False),
    Column("reason", String(32)),
    Column("detail", Text),
    Column("first_seen", UTCDateTime()),
    Column("last_checked", UTCDateTime()),
    Column("last_decided", UTCDateTime()),
    Column("last_changed", UTCDateTime()),
    Column("consecutive_misses", Integer, nullable=False),
    Column("consecutive_errors", Integer, nullable=False),
    Column("missing_alerted", Boolean, nullable=False),
    Column("failing_alerted", Boolean, nullable=False),
    Column("digest_changes", Integer, nullable=False),
    Column("newer_version", String(128)),
    # Compare-and-set: a write names the version it read, and is refused when it is stale.
    Column("version", Integer, nullable=False, server_default="0"),
    # Its check.failing was covered by a registry.failing: so is its check.recovered.
    Column("failing_covered", Boolean, nullable=False, server_default=false()),
)

# ``monitor.domain.RegistryState``, one row per registry that has had an outage.
registry_states = Table(
    "registry_states",
    metadata,
    Column("registry", String(255), primary_key=True),
    Column("failing", Boolean, nullable=False),
    Column("since", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per change of decided status, digest or platform digests.
history = Table(
    "history",
    metadata,
    _id(),
    Column("image", String(512), nullable=False, index=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("digest", String(160)),
    Column("platforms", JSON(), nullable=False),
    # The event the change caused, if any; not a foreign key, since events are
    # pruned on their own schedule.
    Column("event_id", String(26)),
)

# One event; ``seq`` is the order, ``payload`` the SPEC §6 body.
events = Table(
    "events",
    metadata,
    Column("seq", IdType, primary_key=True, autoincrement=True),
    Column("id", String(26), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("image", String(512), nullable=False, index=True),
    Column("occurred_at", UTCDateTime(), nullable=False, index=True),
    Column("payload", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # AUTOINCREMENT so a seq is never reused on SQLite, even after pruning the newest rows:
    # clients page with ``since=<id>``.
    sqlite_autoincrement=True,
)

# The webhook outbox: one row per (event, webhook).
deliveries = Table(
    "deliveries",
    metadata,
    _id(),
    Column(
        "event_seq",
        IdType,
        ForeignKey("events.seq", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("webhook", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False, index=True),
    Column("claimed_until", UTCDateTime()),
    Column("last_status_code", Integer),
    Column("last_error", String(500)),
    Column("last_latency_ms", Float),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    # Set when the webhook's ``batch:`` window closed: the members are sent as one
    # delivery under this id (its ``webhook-id``), claimed and finished together.
    Column("batch_id", String(64), index=True),
    CheckConstraint(
        "status IN ({})".format(", ".join(f"'{s}'" for s in DELIVERY_STATUSES)),
        name="status",
    ),
)

# One HTTP attempt of one delivery.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    _id(),
    Column(
        "delivery_id",
        IdType,
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("attempted_at", UTCDateTime(), nullable=False),
    Column("status_code", Integer),
    Column("error", String(500)),
    Column("latency_ms", Float),
)

# A lease held by one replica (``monitor.store.lease``): the leader's is named ``leader``.
# ``expires_at`` is always set from the database's clock, never a replica's.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    # The fencing token: grows by one with each acquisition.
    Column("epoch", BigInteger, nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)
