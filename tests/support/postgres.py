"""A throwaway PostgreSQL cluster on loopback (Debian's ``postgresql``), one per test session.

    server = PostgresServer().start()
    url = server.create_database()      # postgresql+psycopg://regmon@127.0.0.1:PORT/t0123…
    server.stop(); server.start()       # same port, same data: an outage and a recovery

The server refuses to run as root, so when the suite runs as root the cluster
belongs to the ``postgres`` system user that Debian's package creates. When
``REGMON_TEST_POSTGRES_URL`` names a server (``postgresql+psycopg://user:pw@host:port/db``,
a role allowed to CREATE DATABASE), that server is used instead and nothing is started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import uuid4

import pytest

from .faults import free_port

__all__ = ["POSTGRES_URL_ENV", "PostgresServer", "postgres_bin_dir"]

POSTGRES_URL_ENV = "REGMON_TEST_POSTGRES_URL"
_USER = "regmon"
_INSTALL_HINT = (
    "PostgreSQL server binaries are missing (no /usr/lib/postgresql/*/bin/initdb): the "
    "PostgreSQL tests need them. Install them with the project's test command "
    "(scripts/test installs `postgresql`), or set REGMON_TEST_POSTGRES_URL to a server."
)


def postgres_bin_dir() -> Path:
    """The newest installed server's bin folder; fails (never skips) the test when none is."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail(_INSTALL_HINT, pytrace=False)
    return found[-1].parent


class PostgresServer:
    """One ``postgres`` process with its own data folder and port (or an external server)."""

    def __init__(self, *, port: int | None = None) -> None:
        self.external = os.environ.get(POSTGRES_URL_ENV) or None
        self.port = port or free_port()
        self._root: Path | None = None
        self._running = False

    # -- addresses --------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        if self.external is not None:
            from sqlalchemy.engine import make_url

            return make_url(self.external).set(database=database).render_as_string(False)
        return f"postgresql+psycopg://{_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"t{uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        parsed = make_url(self.url("postgres"))
        with psycopg.connect(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            password=parsed.password,
            dbname=parsed.database,
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        if self.external is not None or self._running:
            return self
        bin_dir = postgres_bin_dir()
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="regmon-pg-"))
            self._chown(self._root)
            self._run(
                bin_dir / "initdb",
                "-D", str(self.data), "-U", _USER, "-A", "trust", "-E", "UTF8",
                "--no-sync", "--no-instructions",
            )  # fmt: skip
        self._run(
            bin_dir / "pg_ctl",
            "-D", str(self.data), "-l", str(self._root / "server.log"), "-w", "-t", "60",
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self._root} -F -c max_connections=200",
            "start",
        )  # fmt: skip
        self._running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no checkpoint, clients cut off)."""
        if self.external is not None or not self._running:
            return
        self._run(postgres_bin_dir() / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self._running = False

    def close(self) -> None:
        self.stop("immediate")
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    @property
    def data(self) -> Path:
        assert self._root is not None
        return self._root / "data"

    @property
    def log(self) -> str:
        if self._root is None or not (self._root / "server.log").exists():
            return ""
        return (self._root / "server.log").read_text(errors="replace")

    def _run(self, *argv: Any) -> None:
        done = subprocess.run(
            [str(arg) for arg in argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._as_owner(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(str(argv[0])).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}\n{self.log[-2000:]}"
            )

    @staticmethod
    def _as_owner() -> dict[str, Any]:
        # postgres refuses root; Debian's package creates the `postgres` system user.
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "cwd": "/"}

    @staticmethod
    def _chown(path: Path) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
