"""The store's transaction helpers: error translation, the write transaction, the upsert.

SQL stays portable (SQLite and PostgreSQL); the only dialect-specific piece is
the upsert, chosen by ``engine.dialect.name``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.store.engine import SQLITE_BEGIN, StoreError, redact_url
from monitor.store.lease import FENCE

__all__: list[str] = []

_P = ParamSpec("_P")
_R = TypeVar("_R")


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
    """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE).

    A leader's engine carries a fence (``monitor.store.lease``): checked first, in the
    same transaction, so a write under a lost lease is refused whole (``Fenced``).
    """
    with engine.connect() as conn:
        conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            fence = conn.get_execution_options().get(FENCE)
            if fence is not None:
                fence.check(conn)
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
    if dialect in ("sqlite", "postgresql"):
        # The two dialects spell ON CONFLICT DO UPDATE alike.
        native = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
        conn.execute(
            native.on_conflict_do_update(
                index_elements=[table.c[key]],
                set_={name: native.excluded[name] for name in columns},
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
