"""monitor.runtime.startup: a start-up cancelled (SIGTERM) while the schema is being
upgraded ends only once the upgrade's thread has given its connection back, so the
engine start-up then disposes holds no connection that only the garbage collector
would close."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from monitor.config import parse_config
from monitor.runtime.replica import Replica
from monitor.runtime.startup import open_store


def test_a_start_cancelled_mid_upgrade_ends_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    engines: list[Engine] = []

    def slow_upgrade(engine: Engine) -> None:
        engines.append(engine)
        with engine.connect() as conn:
            started.set()
            release.wait(10)
            conn.execute(text("SELECT 1"))

    monkeypatch.setattr("monitor.store.engine.upgrade", slow_upgrade)
    config = parse_config(f"database: sqlite:///{tmp_path / 'regmon.db'}\nwatch: []\n")
    replica = Replica(None, config=lambda: config, watches=dict)

    async def go() -> tuple[bool, int]:
        with contextlib.ExitStack() as on_failure:
            opening = asyncio.create_task(open_store(config, replica, on_failure))
            assert await asyncio.to_thread(started.wait, 10)
            opening.cancel()
            done, _ = await asyncio.wait({opening}, timeout=0.5)
            checked_out = engines[0].pool.checkedout()  # type: ignore[attr-defined]
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await opening
            assert engines[0].pool.checkedout() == 0  # type: ignore[attr-defined]
        return bool(done), checked_out

    # The cancelled start waits for its thread (its connection still out).
    assert asyncio.run(go()) == (False, 1)
