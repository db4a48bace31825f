"""The running service keeps its config without the ``watch:`` entries once they are resolved
(issue 15: ~580 B of pydantic models per watch that nothing reads again); the watches,
the store and a reload behave as before (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.config import load_config
from monitor.service import Service
from monitor.store.repository import active_watches

ONE = "127.0.0.1:9/resolved/one:v1"
TWO = "127.0.0.1:9/resolved/two:v1"


def write(path: Path, db: str, *refs: str) -> None:
    watches = "".join(f"  - image: {ref}\n" for ref in refs)
    path.write_text(f"database: {db}\ndefaults: {{interval: 1h, jitter: 0%}}\nwatch:\n{watches}")


def test_the_running_config_holds_no_watch_entries(tmp_path: Path, db_url: str) -> None:
    config, db = tmp_path / "regmon.yaml", db_url
    write(config, db, ONE)

    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        try:
            assert service.config.watch == ()
            assert service.config.database == db
            assert [w.key for w in service.watches()] == [ONE]
            write(config, db, ONE, TWO)
            assert await service.reload() is True
            assert service.config.watch == ()
            assert [w.key for w in service.watches()] == [ONE, TWO]
            rows = await asyncio.to_thread(active_watches, service.engine)
            assert sorted(row.image for row in rows) == [ONE, TWO]
        finally:
            await service.stop()

    asyncio.run(main())
