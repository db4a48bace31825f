"""monitor.runtime.replica: taking the lead, cancelled (stop() cancels the lease's consumer
mid-load), ends only once its store reads have given their connections back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event

from monitor.config import parse_config
from monitor.runtime.replica import Replica


class Leading:
    epoch = 1

    def is_leader(self) -> bool:
        return True


def test_taking_the_lead_cancelled_mid_load_ends_after_its_read(engine: Engine) -> None:
    """The service disposes the engine after the cancel: a connection handed back to a
    disposed pool stays open until the garbage collector finds it."""
    started, release = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM watches" in statement:  # the first load: the leader's listings
            started.set()
            release.wait(10)

    event.listen(engine, "before_cursor_execute", hold)
    config = parse_config("watch: []\n")
    replica = Replica(Leading(), config=lambda: config, watches=dict)

    async def go() -> tuple[bool, int]:
        await replica.open(engine, None, contextlib.ExitStack())
        parts: Any = object()
        replica.attach(cache=parts, recorder=parts, outages=None, metrics=None, deliveries=None)
        taking = asyncio.create_task(replica.on_role(True, True))
        assert await asyncio.to_thread(started.wait, 10)
        taking.cancel()
        done, _ = await asyncio.wait({taking}, timeout=0.5)
        checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await taking
        return bool(done), checked_out

    # The cancelled task waits for its thread (its connection still out).
    assert asyncio.run(go()) == (False, 1)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
