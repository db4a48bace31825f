"""Engine setup, schema upgrades and the readiness probe.

SQLite gets WAL (readers never block the writer), a busy timeout, enforced
foreign keys, and explicit ``BEGIN`` statements so SQLAlchemy (not the
``sqlite3`` module) decides where transactions start; write transactions use
``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of failing
with ``SQLITE_BUSY`` when one upgrades a read lock.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url

import monitor
from monitor.errors import ConfigError, RegmonError

if TYPE_CHECKING:
    # Alembic (~50 modules, several MB) is imported only to migrate: a database
    # already at head is recognised from the migration files and alembic_version.
    from alembic.config import Config

__all__ = [
    "MIGRATION_LOCK",
    "SQLITE_BEGIN",
    "DatabaseUnavailable",
    "StoreError",
    "alembic_config",
    "check_schema",
    "downgrade",
    "error_line",
    "is_database_error",
    "make_engine",
    "migrations_dir",
    "redact_url",
    "refuse_empty_sqlite_file",
    "upgrade",
]

# Connection execution option read by the ``begin`` hook: "IMMEDIATE" for writers.
SQLITE_BEGIN = "regmon_sqlite_begin"

WAL_AUTOCHECKPOINT_PAGES = 256  # 1 MiB of 4 KiB pages (SQLite's default: 1,000)
WAL_SIZE_LIMIT = 1024 * 1024  # bytes

# pg_advisory_xact_lock key of schema migrations ("regmon" in ASCII): replicas started
# together take turns, so the second sees the first's schema instead of racing its DDL.
MIGRATION_LOCK = 0x7265676D6F6E

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class StoreError(RegmonError):
    """The database could not be reached, or its schema is not the one this code expects."""


@functools.cache
def migrations_dir() -> Path:
    """The Alembic tree of the imported ``monitor`` package.

    An installed package carries it as ``monitor/migrations`` (setup.py maps the
    top-level folder there); a source checkout, editable install included, has it
    beside the package. Always relative to the ``monitor`` actually imported, so a
    checkout on PYTHONPATH never migrates with another install's scripts.
    """
    shipped = importlib.resources.files(monitor) / "migrations"
    if isinstance(shipped, Path) and shipped.is_dir():
        return shipped.resolve()
    checkout = Path(monitor.__file__).resolve().parent.parent / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    # A packaging fault, not the user's: say what is missing instead of Alembic's traceback.
    raise StoreError(
        f"the database migrations are missing from this installation ({shipped}); reinstall regmon"
    )


class DatabaseUnavailable(StoreError):
    """Writes fail right now (locked, full, corrupt, unreachable); what was not written is kept.

    The message is one line, safe for a log line and an HTTP 503 body.
    """


def error_line(exc: BaseException) -> str:
    """One line for a database error: the driver's message, without SQL or parameters.

    ``exc`` may be a SQLAlchemy error or a ``StoreError`` raised from one.
    """
    cause = exc.__cause__
    if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError) and isinstance(
        cause, sqlalchemy.exc.SQLAlchemyError
    ):
        exc = cause
    return _first_line(exc)


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database (not a bug of ours): no traceback needed."""
    return isinstance(exc, sqlalchemy.exc.SQLAlchemyError | StoreError)


def redact_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, safe to log."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD.sub(r"\1***@", url)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; a URL that cannot be used raises ``ConfigError``."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(f"database: invalid URL {redact_url(url)!r}") from exc
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        _create_parent_dir(parsed)
    try:
        engine = create_engine(parsed, **kwargs)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(
            f"database: cannot use {redact_url(parsed)!r}: {str(exc).splitlines()[0]}"
        ) from exc
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _create_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"database: cannot create the directory of {redact_url(url)!r}: {exc.strerror}"
        ) from exc


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Leave transaction control to the ``begin`` hook below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A small WAL, checkpointed often and truncated back to this size when a
        # checkpoint restarts it: the space a burst took goes back to the filesystem
        # instead of being kept by the WAL (on a small volume, the space a checkpoint
        # needs to grow the database file). Not a checkpoint on "disk full": the few
        # blocks it frees let one write through, and a full disk would then flap
        # between failing and working (and log both) instead of just failing.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    finally:
        cursor.close()


def refuse_empty_sqlite_file(url: str) -> None:
    """Raise ``StoreError`` if ``url`` names an existing SQLite file of 0 bytes.

    SQLite opens such a file as a new, empty database, and the service would
    then start from nothing without a word. But the service writes its schema
    in the same moment it creates the file, so an existing 0-byte file was
    made by someone else: a ``touch``, a truncation, a copy onto a full disk,
    a restore that failed. Starting on it would hide the loss of every state
    and event; ``regmon db upgrade`` makes it a new database on purpose.
    """
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return  # make_engine says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return
    path = Path(database)
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except OSError:
        return
    if empty:
        raise StoreError(
            f"database {redact_url(url)} is an empty (0-byte) file, not a regmon database; "
            "restore it from a backup, or run `regmon db upgrade` to start a new database in it"
        )


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the migrations of the imported package, whatever the cwd."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        # ConfigParser interpolation would eat a '%' in a password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, in-process (nothing to do at head; an
    empty database is created at head from the models, without Alembic)."""
    if (
        revision == "head"
        and isinstance(url_or_engine, Engine)
        and (_at_head(url_or_engine) or _created_at_head(url_or_engine))
    ):
        return
    from alembic import command

    _migrate(command.upgrade, url_or_engine, revision)


def _created_at_head(engine: Engine) -> bool:
    """Create an empty database's tables from the models and stamp it at head (Alembic's
    own recipe for a new database); False if it is not empty, or on any error (then
    Alembic migrates, and says what is wrong).

    A first ``regmon run`` then never imports Alembic and Mako, which would stay loaded
    for the life of the process (~10 MiB, ~0.3 s). tests/store/test_migrations.py checks
    that the tables are those the migrations build, on each backend.
    """
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table

    from monitor.store.models import metadata

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if inspect(conn).get_table_names():
                return False
            metadata.create_all(conn)
            version = Table(  # as Alembic creates it
                "alembic_version",
                MetaData(),
                Column("version_num", String(32), nullable=False),
                PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
            )
            version.create(conn)
            conn.execute(version.insert(), [{"version_num": h} for h in sorted(_migration_heads())])
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    return True


def downgrade(url_or_engine: str | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"``: drop everything)."""
    from alembic import command

    _migrate(command.downgrade, url_or_engine, revision)


def _migrate(
    run: Callable[[Config, str], None], url_or_engine: str | Engine, revision: str
) -> None:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Held until this transaction ends; Alembic runs inside it.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = alembic_config()
            config.attributes["connection"] = conn
            run(config, revision)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StoreError(
            f"database {redact_url(engine.url)}: migration failed: {_first_line(exc)}"
        ) from exc
    finally:
        if engine is not url_or_engine:
            engine.dispose()


_REVISION = re.compile(r"^revision(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?::[^=]*)?=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


@functools.cache
def _migration_heads() -> frozenset[str]:
    # The scripts do not change while the process runs; /readyz asks often. Read
    # from the files (their ``revision``/``down_revision`` lines) rather than through
    # Alembic's ScriptDirectory, which would import Alembic for a database at head.
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (migrations_dir() / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        down = _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return _alembic_heads()  # a script written another way: ask Alembic
        revisions.add(revision.group(1))
        parents.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - parents) or _alembic_heads()


def _alembic_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _current_heads(conn: Connection) -> set[str]:
    """The revisions ``alembic_version`` holds (none: a database never migrated)."""
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return _current_heads(conn) == _migration_heads()
    except sqlalchemy.exc.SQLAlchemyError:
        return False  # Alembic's own path says what is wrong


def check_schema(engine: Engine) -> None:
    """Raise ``StoreError`` unless the database answers and its schema is at head."""
    heads = _migration_heads()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = _current_heads(conn)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StoreError(
            f"database {redact_url(engine.url)} unreachable: {_first_line(exc)}"
        ) from exc
    if current != heads:
        have = ", ".join(sorted(current)) or "empty"
        raise StoreError(
            f"database schema is at {have}, expected {', '.join(sorted(heads))}; run the migrations"
        )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
