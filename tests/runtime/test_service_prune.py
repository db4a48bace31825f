"""The service prunes events, deliveries and history older than ``retention``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.records import prepared
from support.wait import wait_for

from monitor.config import parse_config
from monitor.domain import Status
from monitor.ids import new_event_id
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.service import Service
from monitor.store.repository import list_events, record_evaluations
from monitor.wire import event_to_payload

IMAGE = "127.0.0.1:5000/team/app:v1"


def _evaluation(at: datetime) -> Evaluation:
    state = TagState(image=IMAGE, status=Status.MISSING, decided_status=Status.MISSING)
    event = Event(
        id=new_event_id(at),
        type=EventType.TAG_MISSING,
        occurred_at=at,
        image=IMAGE,
        current_status=Status.MISSING,
        checked_at=at,
        reason="manifest unknown",
    )
    return Evaluation(state=state, events=(event,), changed=True)


def test_old_events_are_pruned_and_recent_ones_kept(tmp_path: Path, db_url: str) -> None:
    config = parse_config(f"database: {db_url}\nretention: 1h\nwatch: []\n")

    async def main() -> tuple[list[str], str]:
        service = Service(config)
        from monitor.store.engine import make_engine, upgrade

        engine = make_engine(config.database)
        upgrade(engine)
        now = datetime.now(UTC)
        old, recent = _evaluation(now - timedelta(hours=2)), _evaluation(now)
        record_evaluations(engine, prepared([old, recent], event_to_payload))
        engine.dispose()
        await service.start(serve_http=False)
        try:
            ids = await asyncio.to_thread(
                wait_for,
                lambda: events if len(events := list_events(service.engine)) == 1 else None,
                10.0,
                message="the old event was not pruned",
            )
            return [e["id"] for e in ids], recent.events[0].id
        finally:
            await service.stop()

    remaining, recent_id = asyncio.run(main())
    assert remaining == [recent_id]
