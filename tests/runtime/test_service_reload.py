"""Reloads are all or nothing: a config the scheduler refuses changes neither store nor view."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Watch, load_config
from monitor.scheduler import WatchScheduler
from monitor.service import Service
from monitor.store.repository import active_watches

ONE = "127.0.0.1:9/reload/one:v1"
TWO = "127.0.0.1:9/reload/two:v1"


def write(path: Path, db: str, *refs: str) -> None:
    watches = "".join(f"  - image: {ref}\n" for ref in refs)
    path.write_text(f"database: {db}\ndefaults: {{interval: 1h, jitter: 0%}}\nwatch:\n{watches}")


def active(service: Service) -> list[str]:
    return sorted(row.image for row in active_watches(service.engine))


def test_a_reload_the_scheduler_refuses_leaves_store_scheduler_and_view_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, db_url: str
) -> None:
    config, db = tmp_path / "regmon.yaml", db_url
    write(config, db, ONE)
    real_trigger = WatchScheduler._trigger

    def refusing(watch: Watch) -> Any:
        # What APScheduler raises for an interval past datetime's range; the config
        # loader refuses such intervals now, this stands for any trigger it cannot hold.
        if watch.key == TWO:
            raise OverflowError("date value out of range")
        return real_trigger(watch)

    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        try:
            assert active(service) == [ONE]
            write(config, db, ONE, TWO)
            with monkeypatch.context() as patch:
                patch.setattr(WatchScheduler, "_trigger", staticmethod(refusing))
                assert await service.reload() is False
            assert [w.key for w in service.watches()] == [ONE]  # what the API lists
            assert await asyncio.to_thread(active, service) == [ONE]  # the watches table
            assert service.is_ready()

            # The same file, now schedulable: applied, and the job is added now, so it
            # was not added (unscheduled, half-applied) by the refused reload.
            assert await service.reload() is True
            assert [w.key for w in service.watches()] == [ONE, TWO]
            assert await asyncio.to_thread(active, service) == [ONE, TWO]
        finally:
            await service.stop()

    with caplog.at_level(logging.INFO, logger="regmon"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "regmon"]
    refused = [m for m in messages if "reload refused" in m]
    assert refused, messages
    assert set(refused) == {
        "config reload refused, keeping the running config: "
        f"watch {TWO}: cannot be scheduled: date value out of range"
    }
    assert not any(r.exc_info for r in caplog.records), messages
    # Exactly one reload added the watch (the file watcher may have reloaded too: 0 added).
    added = [m for m in messages if m.startswith("config reloaded: 2 watches (1 added,")]
    assert added == ["config reloaded: 2 watches (1 added, 0 removed, 0 rescheduled)"], messages
