"""The store is the authority for a tag's previous state; the service's copy is a cache.

A write evaluated on a stale state (another writer moved the tag on) is
refused by the store; the service refreshes its cache from the store and
evaluates the same result again on top of the stored state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from support.faults import free_port

from monitor.config import parse_config, resolve_watches
from monitor.domain import Status
from monitor.records import Evaluation, TagState
from monitor.service import Service
from monitor.store import Record, load_versioned_states, make_engine, record_evaluations


def test_a_write_on_a_stale_state_is_evaluated_again_on_the_stored_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, db_url: str
) -> None:
    # Nothing listens there: every check is an error, with no network beyond loopback.
    image = f"127.0.0.1:{free_port()}/team/app:v1"
    config = parse_config(
        f"database: {db_url}\n"
        "defaults: {interval: 1h, jitter: 0%, failing_after: 100}\n"
        f"watch:\n  - image: {image}\n"
    )
    key = resolve_watches(config)[0].key

    async def main() -> tuple[int, int, dict[str, tuple[TagState, int]]]:
        service = Service(config)
        await service.start(serve_http=False)
        try:
            # Another writer (a second replica) records five errors after our start.
            theirs = TagState(image=key, status=Status.ERROR, consecutive_errors=5)
            other = make_engine(config.database)
            try:
                done = record_evaluations(
                    other, [replace(Record(Evaluation(theirs)), expected=0, version=7)]
                )
                assert done.refused == ()
            finally:
                other.dispose()
            state = await service.check_now(key)
            await service.flush()  # the result evaluated again is written at the next flush
            stored = load_versioned_states(service.engine)
            return state.consecutive_errors, service.states()[key].consecutive_errors, stored
        finally:
            await service.stop()

    with caplog.at_level(logging.WARNING, logger="regmon"):
        answered, cached, stored = asyncio.run(main())
    assert (answered, cached) == (6, 6)
    assert stored[key][0].consecutive_errors == 6
    assert stored[key][1] == 8
    assert [r.getMessage() for r in caplog.records if "stale" in r.getMessage()] == [
        "1 results were evaluated on a stale state (another writer); "
        "evaluating them again on the stored one"
    ]
