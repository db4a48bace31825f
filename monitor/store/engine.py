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
from typing import Any

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

import monitor
from monitor.errors import ConfigError, RegmonError

__all__ = [
    "SQLITE_BEGIN",
    "StoreError",
    "alembic_config",
    "check_schema",
    "downgrade",
    "make_engine",
    "migrations_dir",
    "redact_url",
    "upgrade",
]

# Connection execution option read by the ``begin`` hook: "IMMEDIATE" for writers.
SQLITE_BEGIN = "regmon_sqlite_begin"

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
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the migrations of the imported package, whatever the cwd."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        # ConfigParser interpolation would eat a '%' in a password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, in-process."""
    _migrate(command.upgrade, url_or_engine, revision)


def downgrade(url_or_engine: str | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"``: drop everything)."""
    _migrate(command.downgrade, url_or_engine, revision)


def _migrate(
    run: Callable[[Config, str], None], url_or_engine: str | Engine, revision: str
) -> None:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
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


@functools.cache
def _migration_heads() -> frozenset[str]:
    # The scripts do not change while the process runs; /readyz asks often.
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def check_schema(engine: Engine) -> None:
    """Raise ``StoreError`` unless the database answers and its schema is at head."""
    heads = _migration_heads()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
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
