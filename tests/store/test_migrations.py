"""migrations/: an empty database upgrades to head and matches the models, on each backend."""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from support.paths import ROOT as REPO

from monitor.store import check_schema, make_engine, upgrade
from monitor.store.engine import alembic_config, downgrade, migrations_dir
from monitor.store.models import metadata

TABLES = {
    "watches",
    "tag_states",
    "history",
    "events",
    "deliveries",
    "delivery_attempts",
    "registry_states",
    "leases",
}
HEAD = "0005"


@pytest.fixture
def empty(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # Not the repository: the migrations must be found whatever the working directory.
    monkeypatch.chdir(tmp_path)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    # A checkout (this suite runs on one) migrates with its own top-level tree.
    assert migrations_dir() == REPO / "migrations"


def test_upgrade_empty_database_to_head(empty: Engine) -> None:
    assert inspect(empty).get_table_names() == []
    upgrade(empty)
    assert TABLES <= set(inspect(empty).get_table_names())
    check_schema(empty)
    with empty.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (HEAD,)


def test_upgrade_by_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'by-url.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        check_schema(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(empty: Engine) -> None:
    upgrade(empty, HEAD)  # a revision, not "head": through Alembic, never create_all
    with empty.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_0002_versions_stored_states_and_credits_watches_to_the_config(empty: Engine) -> None:
    upgrade(empty, "0001")
    at = datetime(2026, 11, 27, tzinfo=UTC)
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO watches (image, registry, repository, tag, active, created_at)"
                " VALUES ('r.io/a:1', 'r.io', 'a', '1', true, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO tag_states (image, platforms, consecutive_misses,"
                " consecutive_errors, missing_alerted, failing_alerted, digest_changes)"
                " VALUES ('r.io/a:1', '{}', 0, 0, false, false, 0)"
            )
        )
    upgrade(empty)
    with empty.connect() as conn:
        assert conn.execute(text("SELECT source FROM watches")).all() == [("config",)]
        assert conn.execute(text("SELECT version FROM tag_states")).all() == [(0,)]


def test_0004_stored_states_start_uncovered_and_no_registry_is_failing(empty: Engine) -> None:
    upgrade(empty, "0003")
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tag_states (image, platforms, consecutive_misses,"
                " consecutive_errors, missing_alerted, failing_alerted, digest_changes)"
                " VALUES ('r.io/a:1', '{}', 0, 3, false, true, 0)"
            )
        )
    upgrade(empty)
    with empty.connect() as conn:
        assert conn.execute(text("SELECT failing_covered FROM tag_states")).all() == [(False,)]
        assert conn.execute(text("SELECT count(*) FROM registry_states")).scalar() == 0


def _schema(engine: Engine) -> dict[str, dict[str, object]]:
    """Every table as the database describes it (columns by name: their order is not
    part of the schema), ``alembic_version`` included."""
    seen = inspect(engine)
    return {
        table: {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in seen.get_columns(table)
            ),
            "primary key": seen.get_pk_constraint(table),
            "foreign keys": sorted(
                (
                    fk["name"] or "",
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    sorted((fk.get("options") or {}).items()),
                )
                for fk in seen.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"] or "", tuple(ix["column_names"]), ix["unique"])
                for ix in seen.get_indexes(table)
            ),
            "unique": sorted(
                (uq["name"] or "", tuple(uq["column_names"]))
                for uq in seen.get_unique_constraints(table)
            ),
            "checks": sorted(
                (ck["name"] or "", ck["sqltext"]) for ck in seen.get_check_constraints(table)
            ),
        }
        for table in sorted(seen.get_table_names())
    }


def test_an_empty_database_is_created_at_head_as_the_migrations_build_it(empty: Engine) -> None:
    upgrade(empty)  # empty: the models' tables, stamped at head
    created = _schema(empty)
    with empty.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (HEAD,)
    # Alembic takes it down as it would a migrated one (the constraint names match) ...
    downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) == {"alembic_version"}
    # ... and its migrations build the same tables again.
    upgrade(empty, HEAD)
    assert _schema(empty) == created
    assert TABLES | {"alembic_version"} == set(created)


def test_a_database_with_tables_is_left_to_alembic(empty: Engine) -> None:
    upgrade(empty, "0004")
    upgrade(empty)  # not empty: migrated from 0004, not created
    check_schema(empty)
    with empty.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (HEAD,)


def test_downgrade_and_upgrade_again(empty: Engine) -> None:
    upgrade(empty)
    downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) == {"alembic_version"}
    upgrade(empty)
    check_schema(empty)


def test_alembic_ini_points_at_the_same_migrations() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "alembic.ini")
    location = parser.get("alembic", "script_location", vars={"here": str(REPO)})
    assert Path(location).resolve() == migrations_dir()
