"""Repository watches in the API (/api/v1/repositories), on the status page and in /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.fakes import FakeView

from monitor.config import parse_config
from monitor.domain import Reason, Status
from monitor.metrics import Metrics
from monitor.records import RepositoryState, TagState
from monitor.store.engine import make_engine, upgrade
from monitor.web.app import create_app

T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
A = "sha256:" + "a" * 64
API = "ghcr.io/acme/api"


@pytest.fixture
def view(tmp_path: Path) -> Iterator[FakeView]:
    engine = make_engine(f"sqlite:///{tmp_path / 'regmon.db'}")
    upgrade(engine)
    try:
        config = parse_config(f"watch:\n  - repository: {API}\n  - repository: r.io/gone\n")
        view = FakeView(config=config, engine=engine)
        view.repository_list = [
            RepositoryState(
                API,
                (f"{API}:v2.0.0", f"{API}:v2.1.0"),
                Status.PRESENT,
                listed_at=T0,
                listed=262,
            ),
            RepositoryState("r.io/gone", (), Status.ERROR, Reason.TIMEOUT, "tags/list timed out"),
        ]
        view.state_map[f"{API}:v2.0.0"] = TagState(f"{API}:v2.0.0", Status.PRESENT, digest=A)
        yield view
    finally:
        engine.dispose()


def get(view: FakeView, path: str) -> httpx.Response:
    registry = CollectorRegistry()
    app = create_app(view, registry, on_read=Metrics(registry, view).observe_read)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_the_repositories_api(view: FakeView) -> None:
    assert get(view, "/api/v1/repositories").json() == {
        "repositories": [
            {
                "repository": API,
                "status": "present",
                "reason": None,
                "detail": None,
                "listed_at": "2026-11-27T05:40:20Z",
                "listed": 262,
                "selected": 2,
                "tags": [
                    {
                        "reference": f"{API}:v2.0.0",
                        "tag": "v2.0.0",
                        "status": "present",
                        "digest": A,
                    },
                    {
                        "reference": f"{API}:v2.1.0",
                        "tag": "v2.1.0",
                        "status": "unknown",
                        "digest": None,
                    },
                ],
            },
            {
                "repository": "r.io/gone",
                "status": "error",
                "reason": "timeout",
                "detail": "tags/list timed out",
                "listed_at": None,
                "listed": 0,
                "selected": 0,
                "tags": [],
            },
        ]
    }


def test_the_status_page_shows_each_repository_with_its_tags(view: FakeView) -> None:
    page = get(view, "/").text
    assert "<h2>Repositories</h2>" in page
    assert (
        f"<tr><td><code>{API}</code><br><small>2 of 262 tags selected</small></td>"
        '<td><span class="badge present">present</span></td>'
    ) in page
    assert f'<span class="badge present" title="{API}:v2.0.0">v2.0.0</span>' in page
    assert f'<span class="badge unknown" title="{API}:v2.1.0">v2.1.0</span>' in page
    assert (
        '<span class="badge error">error</span><br><small>timeout: tags/list timed out</small>'
    ) in page


def test_regmon_repository_tags(view: FakeView) -> None:
    text = get(view, "/metrics").text
    assert 'regmon_repository_tags{repository="ghcr.io/acme/api"} 2.0' in text
    assert 'regmon_repository_tags{repository="r.io/gone"} 0.0' in text
