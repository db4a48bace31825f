"""The service wires registry outages: stored states at start, the watched registries on reload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import load_config
from monitor.service import Service
from monitor.store import make_engine, upgrade
from monitor.store.models import Base
from monitor.store.transactions import _write

FAILING = "regmon_registry_failing"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def write(path: Path, db: Path, *refs: str) -> None:
    watches = "".join(f"  - image: {ref}\n" for ref in refs)
    path.write_text(
        f"database: sqlite:///{db}\ndefaults: {{interval: 1h, jitter: 0%}}\nwatch:\n{watches}"
    )


def test_a_stored_outage_is_in_force_at_start_and_a_reload_follows_the_watched_registries(
    tmp_path: Path,
) -> None:
    config, db = tmp_path / "regmon.yaml", tmp_path / "regmon.db"
    write(config, db, "127.0.0.1:9/a/one:v1", "127.0.0.1:9/a/two:v1", "127.0.0.2:9/b/one:v1")
    # What a service that stopped during an outage of 127.0.0.1:9 left in the store.
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with _write(engine) as conn:
        conn.execute(
            Base.metadata.tables["registry_states"].insert(),
            [{"registry": "127.0.0.1:9", "failing": True, "since": T0, "updated_at": T0}],
        )
    engine.dispose()

    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        metrics = service.metrics_registry
        try:
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.1:9"}) == 1
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.2:9"}) == 0
            write(config, db, "127.0.0.2:9/b/one:v1")
            assert await service.reload() is True
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.1:9"}) is None
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.2:9"}) == 0
        finally:
            await service.stop()

    asyncio.run(main())
