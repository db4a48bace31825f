"""Suite-wide fixtures: real registries on loopback, a token issuer, image pushers.

Layout: test files follow the package. tests/core (the modules at monitor/'s top:
reference, events, ids, tags, headers, logs, yamlsafe, metrics, scheduler, threads),
tests/registry, tests/store, tests/notify, tests/web, tests/config, tests/sources,
tests/runtime (the in-process Service and monitor/runtime/), tests/cli (the command
line as a subprocess), tests/e2e (``regmon run`` as a real process), tests/project
(docs, install, scripts, the ops bundle, the harness itself). Shared helpers live in
tests/support, never in a test file; test file basenames stay unique across folders
(no __init__.py: pytest's prepend import mode names a module by its basename).

Session-scoped, started once and shared (never stop them in a test; use
``registry_factory`` for a registry of your own):
    token_issuer     TokenIssuer on 127.0.0.1 (/token)
    registry         RegistryServer, no auth
    registry_basic   RegistryServer, htpasswd (ci / s3cret, realm "regmon-test")
    registry_token   RegistryServer, token auth via ``token_issuer``
    postgres         PostgresServer (a throwaway cluster, or REGMON_TEST_POSTGRES_URL's server)
Function-scoped:
    db_url           an empty database, once per backend: "sqlite" and "postgresql"
    postgres_url     an empty database on the session cluster (``postgres``), dropped after
    engine           an empty store at head, once per backend (a copy of ``head_sqlite``;
                     ``head_postgres`` emptied): not ``db_url``'s database
    backend          "sqlite" or "postgresql": what db_url and engine are parametrized by
    pusher, basic_pusher, token_pusher   ImagePusher for each (as ci / s3cret when auth)
    unique_repo(prefix="test") -> "prefix/t0123456789"
    registry_factory(mode="noauth", *, issuer=None, start=True) -> RegistryServer
    regmon_factory(config, name="svc", *, start=True, **options) -> RegmonProcess
                     ``regmon run`` in tmp_path / name; every one killed afterwards
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import Engine, text

# tests/ is not a package: make `support` importable whatever pytest's import mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.images import ImagePusher  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402
from support.registry import Mode, RegistryServer  # noqa: E402
from support.service import RegmonFactory  # noqa: E402
from support.smtp import Mailbox, smtp_server  # noqa: E402
from support.token_issuer import PASSWORD, USERNAME, TokenIssuer  # noqa: E402

from monitor.store import make_engine, upgrade  # noqa: E402
from monitor.store.models import metadata  # noqa: E402

CI_USER = (USERNAME, PASSWORD)


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[TokenIssuer]:
    """Shared issuer. Call ``.reset()`` before counting its requests; a test that
    changes ``expires_in`` or ``fail_status`` should use its own TokenIssuer."""
    with TokenIssuer() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry-noauth"), "noauth") as server:
        yield server


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry-basic"), "htpasswd") as server:
        yield server


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer
) -> Iterator[RegistryServer]:
    workdir = tmp_path_factory.mktemp("registry-token")
    with RegistryServer(workdir, "token", issuer=token_issuer) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that needs a database (``db_url`` or ``engine``) runs once per backend."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


_SHARED_SCOPES = ("module", "class", "package")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep a module's tests in one xdist worker only where a module's fixture is shared.

    ``scripts/test`` runs ``--dist loadgroup``: every other test goes to whichever worker
    is free, so two workers end together instead of one finishing the last long files
    alone (whole files per worker left one core idle for the last ~4 of 9 minutes).
    A module- or class-scoped fixture (a wheel built once, 262 tags pushed once) would
    be set up in both workers: its module is one group.
    """
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(
            d.scope in _SHARED_SCOPES for defs in info.name2fixturedefs.values() for d in defs
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run of the test is on (parametrized by pytest_generate_tests)."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend; the test runs once per backend."""
    if backend == "sqlite":
        # The parent directory does not exist yet: make_engine creates it.
        yield f"sqlite:///{tmp_path / 'data' / 'regmon.db'}"
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """An empty database on the session cluster; dropped afterwards."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def head_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once, that ``engine`` copies per test."""
    path = tmp_path_factory.mktemp("head") / "regmon.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture(scope="session")
def head_postgres(postgres: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database migrated to head once, that ``engine`` empties per test."""
    url = postgres.create_database()
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def engine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store at the newest schema, empty, once per backend; disposed afterwards.

    Migrating takes ~0.4 s and a new PostgreSQL database more (seconds on a loaded
    machine), so this is a copy of a SQLite file migrated once, or the one migrated
    PostgreSQL database emptied. Not ``db_url``'s database: ask for one or the other."""
    if backend == "sqlite":
        target = tmp_path / "data" / "regmon.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("head_sqlite"), target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("head_postgres")
    eng = make_engine(url)
    if backend != "sqlite":
        tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        with eng.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield eng
    eng.dispose()


@pytest.fixture
def pusher(registry: RegistryServer) -> Iterator[ImagePusher]:
    with ImagePusher(registry.url) as p:
        yield p


@pytest.fixture
def basic_pusher(registry_basic: RegistryServer) -> Iterator[ImagePusher]:
    with ImagePusher(registry_basic.url, auth=CI_USER) as p:
        yield p


@pytest.fixture
def token_pusher(registry_token: RegistryServer) -> Iterator[ImagePusher]:
    with ImagePusher(registry_token.url, auth=CI_USER) as p:
        yield p


@pytest.fixture
def unique_repo() -> Callable[..., str]:
    def make(prefix: str = "test") -> str:
        return f"{prefix}/t{uuid4().hex[:10]}"

    return make


@pytest.fixture
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RegistryServer]]:
    """Extra registries owned by one test (free to stop and start); all stopped afterwards.

    Token mode uses the session ``token_issuer`` unless ``issuer=`` is given.
    """
    servers: list[RegistryServer] = []

    def make(
        mode: Mode = "noauth", *, issuer: TokenIssuer | None = None, start: bool = True
    ) -> RegistryServer:
        if mode == "token" and issuer is None:
            issuer = request.getfixturevalue("token_issuer")
        server = RegistryServer(tmp_path_factory.mktemp(f"registry-{mode}"), mode, issuer=issuer)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def regmon_factory(tmp_path: Path) -> Iterator[RegmonFactory]:
    """``regmon run`` processes owned by one test (tests/support/service.py); all killed after."""
    make = RegmonFactory(tmp_path)
    yield make
    make.close()


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A real SMTP server on loopback that keeps every mail (tests/support/smtp.py)."""
    yield from smtp_server()
