"""Where each watch came from, in ``GET /api/v1/images`` and on the status page: the
``watch:`` list (``config``) or a ``sources:`` entry with every place using the image."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from support.fakes import FakeView

from monitor.config import Watch, parse_config, resolve_watches
from monitor.web.app import create_app

CONFIG = parse_config(
    "watch:\n  - image: r.io/team/api:1\n  - image: r.io/team/base:2\n  - image: r.io/team/db:3\n"
)
SOURCE = "files:deploy/**/*.yaml"
MANY = tuple(f"deploy/app-{n}.yaml:{n + 10}" for n in range(5))


@dataclass
class SourcedView(FakeView):
    def watches(self) -> Sequence[Watch]:
        api, base, db = resolve_watches(self.config)
        return [
            api,
            replace(base, source=SOURCE, places=MANY),
            replace(db, source=SOURCE, places=("deploy/db.yaml:7",)),
        ]


@pytest.fixture
def app(engine: Engine) -> Starlette:
    return create_app(SourcedView(config=CONFIG, engine=engine), CollectorRegistry())


def get(app: Starlette, url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
            return await client.get(url)

    return asyncio.run(go())


def test_every_image_says_its_source_and_places(app: Starlette) -> None:
    images = get(app, "/api/v1/images").json()["images"]
    assert [(image["reference"], image["source"], image["places"]) for image in images] == [
        ("r.io/team/api:1", "config", []),
        ("r.io/team/base:2", SOURCE, list(MANY)),
        ("r.io/team/db:3", SOURCE, ["deploy/db.yaml:7"]),
    ]
    one = get(app, "/api/v1/images/r.io/team/db:3").json()
    assert (one["source"], one["places"]) == (SOURCE, ["deploy/db.yaml:7"])
    paged = get(app, "/api/v1/images?limit=1&after=r.io/team/api:1").json()["images"]
    assert [image["places"] for image in paged] == [list(MANY)]


def test_the_status_page_names_the_source_and_the_first_places(app: Starlette) -> None:
    page = get(app, "/").text
    assert (
        "<small>files:deploy/**/*.yaml: deploy/app-0.yaml:10, deploy/app-1.yaml:11, "
        "deploy/app-2.yaml:12 and 2 more</small>" in page
    )
    assert "<small>files:deploy/**/*.yaml: deploy/db.yaml:7</small>" in page
    api_row = next(row for row in page.split("<tr>") if "r.io/team/api:1" in row)
    assert "files:" not in api_row  # a watch: entry has no origin line
