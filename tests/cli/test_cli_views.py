"""``regmon status`` and ``regmon history``: golden output over a real SQLite store.

The CLI renders from the same view functions as the HTTP API (monitor.web.views),
so ``history --json`` is the API's history body for the same store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from sqlalchemy.engine import Engine
from support.records import prepared

from monitor.cli import main
from monitor.domain import Reason, Status
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.store import repository
from monitor.store.engine import make_engine, upgrade
from monitor.store.models import metadata
from monitor.wire import event_to_payload

ALPINE = "docker.io/library/alpine:3.20"
NGINX = "docker.io/library/nginx:1.27"
APP = "ghcr.io/acme/app:prod"
NEVER = "quay.io/acme/never:1"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
ID_1 = "01KB0000000000000000000001"
ID_2 = "01KB0000000000000000000002"
ID_3 = "01KB0000000000000000000003"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    db = tmp_path / "regmon.db"
    path = tmp_path / "regmon.yaml"
    path.write_text(
        f"database: sqlite:///{db}\n"
        "webhooks:\n  - name: ops\n    url: https://hooks.example.com/regmon\n"
        f"watch:\n  - image: alpine:3.20\n  - image: nginx:1.27\n  - image: {APP}\n"
        f"  - image: {NEVER}\n"
    )
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine)
        _fill(engine)
    finally:
        engine.dispose()
    yield path


def _record(engine: Engine, evaluation: Evaluation, webhooks: Sequence[str] = ()) -> None:
    repository.record_evaluations(
        engine, prepared([evaluation], event_to_payload, lambda _e: webhooks), now=T0
    )


def _fill(engine: Engine) -> None:
    alpine = TagState(
        image=ALPINE,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        first_seen=T0 - timedelta(hours=1),
        last_checked=T0 - timedelta(hours=1),
        last_changed=T0 - timedelta(hours=1),
    )
    _record(
        engine,
        Evaluation(
            state=replace(alpine, digest=DIGEST_A, last_decided=T0 - timedelta(hours=1)),
            changed=True,
        ),
    )
    changed = Event(
        id=ID_1,
        type=EventType.TAG_CHANGED,
        occurred_at=T0,
        image=ALPINE,
        previous_status=Status.PRESENT,
        previous_digest=DIGEST_A,
        current_status=Status.PRESENT,
        current_digest=DIGEST_B,
        checked_at=T0,
    )
    _record(
        engine,
        Evaluation(
            state=replace(
                alpine, digest=DIGEST_B, last_checked=T0, last_decided=T0, last_changed=T0
            ),
            events=(changed,),
            changed=True,
        ),
        webhooks=["ops"],
    )
    missing = Event(
        id=ID_2,
        type=EventType.TAG_MISSING,
        occurred_at=T0 + timedelta(minutes=10),
        image=NGINX,
        previous_status=Status.PRESENT,
        previous_digest=DIGEST_A,
        current_status=Status.MISSING,
        checked_at=T0 + timedelta(minutes=10),
        reason="manifest unknown",
    )
    _record(
        engine,
        Evaluation(
            state=TagState(
                image=NGINX,
                status=Status.MISSING,
                decided_status=Status.MISSING,
                detail="manifest unknown",
                last_checked=T0 + timedelta(minutes=10),
                last_changed=T0 + timedelta(minutes=10),
            ),
            events=(missing,),
            changed=True,
        ),
    )
    failing = Event(
        id=ID_3,
        type=EventType.CHECK_FAILING,
        occurred_at=T0 + timedelta(minutes=20),
        image=APP,
        current_status=Status.ERROR,
        checked_at=T0 + timedelta(minutes=20),
        reason="timeout",
    )
    _record(
        engine,
        Evaluation(
            state=TagState(
                image=APP,
                status=Status.ERROR,
                reason=Reason.TIMEOUT,
                detail="no answer in 10 s",
                last_checked=T0 + timedelta(minutes=20),
            ),
            events=(failing,),
        ),
    )
    deliveries = metadata.tables["deliveries"]
    with engine.begin() as conn:
        conn.execute(
            update(deliveries).values(status="delivered", attempts=1, last_status_code=204)
        )


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_status_text(config: Path) -> None:
    assert cli("status", "--config", str(config)) == (
        f"present  {ALPINE}  {DIGEST_B}\n"
        f"missing  {NGINX}  manifest unknown\n"
        f"error    {APP}  timeout\n"
        f"unknown  {NEVER}  \n"
    )


def test_status_json(config: Path) -> None:
    text = cli("status", "--json", "--config", str(config))
    at_0, at_10 = "2026-11-27T05:40:20Z", "2026-11-27T05:50:20Z"
    rows = [
        (ALPINE, "present", DIGEST_B, None, at_0, at_0),
        (NGINX, "missing", None, "manifest unknown", at_10, at_10),
        (APP, "error", None, "timeout", "2026-11-27T06:00:20Z", None),
        (NEVER, None, None, None, None, None),
    ]
    keys = ("reference", "status", "digest", "reason", "last_checked", "last_changed")
    origin = {"source": "config", "places": []}
    expected = {"images": [{**dict(zip(keys, row, strict=True)), **origin} for row in rows]}
    assert text == json.dumps(expected, indent=2) + "\n"


def test_history_text(config: Path) -> None:
    assert cli("history", "alpine:3.20", "--config", str(config)) == (
        f"{ALPINE}\n"
        f"  2026-11-27T04:40:20Z  present  {DIGEST_A}\n"
        f"  2026-11-27T05:40:20Z  present  {DIGEST_B}\n"
        "events:\n"
        f"  2026-11-27T05:40:20Z  tag.changed  {DIGEST_A} -> {DIGEST_B}\n"
    )
    assert cli("history", "nginx:1.27", "--config", str(config)) == (
        f"{NGINX}\n"
        "  2026-11-27T05:50:20Z  missing  \n"
        "events:\n"
        "  2026-11-27T05:50:20Z  tag.missing  (manifest unknown)\n"
    )
    assert cli("history", APP, "--config", str(config)) == (
        f"{APP}: watched, every check so far failed (error/timeout)\n"
        "events:\n"
        "  2026-11-27T06:00:20Z  check.failing  (timeout)\n"
    )
    assert cli("history", NEVER, "--config", str(config)) == (
        f"{NEVER}: no history (not watched yet, or never checked)\n"
    )


@pytest.mark.parametrize("ref", ["alpine:3.20", "nginx:1.27", APP, NEVER])
def test_history_json_is_the_api_history_body(config: Path, ref: str) -> None:
    import asyncio

    import httpx
    from prometheus_client import CollectorRegistry
    from support.fakes import FakeView

    from monitor.config import load_config
    from monitor.web.app import create_app

    shown = json.loads(cli("history", ref, "--json", "--config", str(config)))
    cfg = load_config(config)
    engine = make_engine(cfg.database)
    try:
        app = create_app(FakeView(config=cfg, engine=engine), CollectorRegistry())

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
                return await client.get(f"/api/v1/images/{ref}/history")

        response = asyncio.run(go())
    finally:
        engine.dispose()
    assert response.status_code == 200
    assert shown == response.json()
    if ref == "alpine:3.20":
        assert shown["history"][1] == {
            "image": ALPINE,
            "recorded_at": "2026-11-27T05:40:20Z",
            "status": "present",
            "digest": DIGEST_B,
            "platforms": {},
            "event_id": ID_1,
        }
        (delivered,) = shown["events"]
        assert delivered["deliveries"] == [
            {"webhook": "ops", "status": "delivered", "attempts": 1, "last_status_code": 204}
        ]


def test_the_views_import_no_web_framework() -> None:
    """``regmon status``/``history`` read the views without Starlette or prometheus_client."""
    import subprocess
    import sys

    code = (
        "import sys, monitor.web.views, monitor.web.reads, monitor.web.queries, monitor.wire\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'prometheus_client', 'sqlalchemy')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[]\n", "")
