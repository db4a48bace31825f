"""A database already at head is recognised without importing Alembic (start-up, memory).

The packaged head is read from the migration files; ``alembic_version`` says where
the database is. Migrating (and a database behind) still goes through Alembic.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

from monitor.store.engine import _alembic_heads, _migration_heads, check_schema, upgrade

PROBE = """
import sys
from monitor.store.engine import check_schema, make_engine, upgrade
engine = make_engine(sys.argv[1])
upgrade(engine)
check_schema(engine)
print(sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic.")))
"""


def test_a_first_start_on_an_empty_database_does_not_import_alembic(tmp_path: Path) -> None:
    # Created from the models and stamped (Alembic and Mako would stay loaded, ~10 MiB).
    url = f"sqlite:///{tmp_path / 'first.db'}"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True
    )
    assert out.stdout == "[]\n", out.stderr


def test_heads_from_the_files_are_alembics() -> None:
    heads = _alembic_heads()
    assert heads and _migration_heads() == heads


def test_start_at_head_does_not_import_alembic(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True
    )
    assert out.stdout == "[]\n", out.stderr


def test_a_database_behind_head_is_still_migrated(engine: Engine) -> None:
    from monitor.store.engine import downgrade

    downgrade(engine, "0004")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0004"
    upgrade(engine)
    check_schema(engine)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0005"
