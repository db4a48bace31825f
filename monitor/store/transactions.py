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
from sqlalchemy.sql import Insert

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
    *,
    bulk: bool = False,
) -> None:
    """Insert ``rows``; where ``key`` already exists, update ``columns`` instead.

    ``bulk``: many rows of the same keys, as ``_execute_many`` runs them."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        # The two dialects spell ON CONFLICT DO UPDATE alike.
        native = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
        statement = native.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={name: native.excluded[name] for name in columns},
        )
        if bulk:
            _execute_many(conn, statement, rows)
        else:
            conn.execute(statement, list(rows))
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


_VARIES: Any = object()


def _execute_many(conn: Connection, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> None:
    """``conn.execute(statement, rows)`` for rows of the same keys, with each value made a
    bind parameter once where every row holds the same object (a timestamp, a flag).

    SQLAlchemy builds and type-processes every row's parameters in Python, most of an
    executemany's time (50,000 watch rows on SQLite: ~2 s of ~2.5 s); here that is one
    tuple per row and the type processors (``UTCDateTime``) only where values differ.
    """
    dialect = conn.dialect
    names = list(rows[0])
    compiled = statement.compile(dialect=dialect, column_keys=names)
    positional = dialect.paramstyle == "qmark"
    order = compiled.positiontup if positional else names
    if (
        getattr(compiled, "insert_prefetch", None)  # Python-side defaults to fill in
        or order is None
        or set(order) != set(names)
        or dialect.paramstyle not in ("qmark", "pyformat", "named")
    ):
        conn.execute(statement, list(rows))
        return
    first = rows[0]
    plan: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
    for name in order:
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        value = first[name]
        if all(row[name] is value for row in rows):
            plan.append((name, None, processor(value) if processor is not None else value))
        else:
            plan.append((name, processor, _VARIES))
    params: list[Any] = []
    for row in rows:
        values = tuple(
            constant
            if constant is not _VARIES
            else (process(row[name]) if process is not None else row[name])
            for name, process, constant in plan
        )
        params.append(values if positional else dict(zip(order, values, strict=True)))
    conn.exec_driver_sql(compiled.string, params)
