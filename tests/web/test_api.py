"""monitor.web: every endpoint, over a FakeView with a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from support.fakes import FakeView
from support.records import prepared

from monitor.config import parse_config
from monitor.domain import Reason, Status
from monitor.ids import new_event_id
from monitor.metrics import Metrics
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.store import repository
from monitor.store.engine import make_engine
from monitor.store.models import metadata
from monitor.web.app import create_app
from monitor.wire import event_to_payload

ALPINE = "docker.io/library/alpine:3.20"
NGINX = "docker.io/library/nginx:1.27"
APP = "ghcr.io/acme/app:prod"
HUB_NAMED_HISTORY = "docker.io/acme/history:latest"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
TOKEN = "s3cret-token"

WATCHES = f"""
webhooks:
  - name: ops
    url: https://user:hookpass@hooks.example.com/regmon
watch:
  - image: alpine:3.20
  - image: nginx:1.27
    interval: 1m
  - image: {APP}
    cron: "*/15 * * * *"
  - image: acme/history
"""

T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)


def checked_now(state: TagState) -> TagState:
    return replace(
        state,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest=DIGEST_B,
        last_checked=T0 + timedelta(hours=1),
    )


def make_view(engine: Engine, token: str | None = None) -> FakeView:
    text = WATCHES if token is None else f"api_token: {token}\n{WATCHES}"
    view = FakeView(config=parse_config(text), engine=engine, on_check=checked_now)
    view.state_map[ALPINE] = TagState(
        image=ALPINE,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest=DIGEST_A,
        platforms={"linux/amd64": DIGEST_B},
        first_seen=T0,
        last_checked=T0 + timedelta(minutes=5),
        last_decided=T0 + timedelta(minutes=5),
        last_changed=T0,
    )
    view.state_map[NGINX] = TagState(
        image=NGINX,
        status=Status.MISSING,
        decided_status=Status.MISSING,
        detail="<script>alert(1)</script>",
        last_checked=T0,
        last_decided=T0,
        last_changed=T0,
        consecutive_misses=2,
    )
    return view


@pytest.fixture
def view(engine: Engine) -> FakeView:
    return make_view(engine)


def make_app(view: FakeView) -> Starlette:
    registry = CollectorRegistry()
    Metrics(registry, view)
    return create_app(view, registry)


@pytest.fixture
def app(view: FakeView) -> Starlette:
    return make_app(view)


def call(app: Starlette, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def get(app: Starlette, url: str, **kwargs: Any) -> httpx.Response:
    return call(app, "GET", url, **kwargs)


# --------------------------------------------------------------------------- probes and metrics


def test_healthz(app: Starlette) -> None:
    response = get(app, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_says_the_role(app: Starlette, view: FakeView) -> None:
    response = get(app, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "role": "leader"}
    view.leader = False  # a follower serves the API: ready, and says it follows
    response = get(app, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "role": "follower"}
    view.ready = False
    response = get(app, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "role": "follower"}


def test_metrics(app: Starlette) -> None:
    response = get(app, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'regmon_image_available{image="docker.io/library/alpine:3.20"' in response.text
    assert "regmon_webhook_pending" in response.text
    assert "hookpass" not in response.text


def test_metrics_negotiates_openmetrics(app: Starlette) -> None:
    response = get(app, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


# --------------------------------------------------------------------------- images


def test_images_lists_every_watch_in_config_order(app: Starlette) -> None:
    response = get(app, "/api/v1/images")
    assert response.status_code == 200
    images = response.json()["images"]
    assert [image["reference"] for image in images] == [ALPINE, NGINX, APP, HUB_NAMED_HISTORY]
    alpine = images[0]
    assert alpine == {
        "reference": ALPINE,
        "registry": "docker.io",
        "repository": "library/alpine",
        "tag": "3.20",
        "status": "present",
        "decided_status": "present",
        "digest": DIGEST_A,
        "media_type": None,
        "platforms": {"linux/amd64": DIGEST_B},
        "watched_platforms": [],
        "reason": None,
        "detail": None,
        "first_seen": "2026-11-27T05:40:20Z",
        "last_checked": "2026-11-27T05:45:20Z",
        "last_decided": "2026-11-27T05:45:20Z",
        "last_changed": "2026-11-27T05:40:20Z",
        "consecutive_misses": 0,
        "consecutive_errors": 0,
        "digest_changes": 0,
        "interval_seconds": 300.0,
        "cron": None,
        "source": "config",
        "places": [],
        "newer_version": None,
    }
    app_image = images[2]
    assert app_image["status"] is None
    assert app_image["last_checked"] is None
    assert app_image["cron"] == "*/15 * * * *"
    assert app_image["interval_seconds"] is None


@pytest.mark.parametrize(
    "path",
    [
        "alpine:3.20",
        "library/alpine:3.20",
        "docker.io/library/alpine:3.20",
        "index.docker.io/library/alpine:3.20",
        "docker.io%2Flibrary%2Falpine%3A3.20",
        "alpine%3A3.20",
    ],
)
def test_image_by_any_spelling_of_its_reference(app: Starlette, path: str) -> None:
    response = get(app, f"/api/v1/images/{path}")
    assert response.status_code == 200, response.text
    assert response.json()["reference"] == ALPINE


def test_image_not_watched_is_404(app: Starlette) -> None:
    response = get(app, "/api/v1/images/alpine:3.19")
    assert response.status_code == 404
    assert response.json() == {"error": "not watched: docker.io/library/alpine:3.19"}


@pytest.mark.parametrize("path", ["Alpine/UPPER:x", "alpine:bad tag", "alpine:-x", ""])
def test_invalid_reference_is_400(app: Starlette, path: str) -> None:
    response = get(app, f"/api/v1/images/{path}")
    assert response.status_code == 400
    message = response.json()["error"]
    assert "\n" not in message
    assert "invalid image reference" in message


def test_unrouted_api_paths_answer_json(app: Starlette) -> None:
    response = get(app, "/api/v1/images/alpine:%0Aevil")  # no route matches a newline
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
    response = call(app, "DELETE", "/api/v1/images")
    assert response.status_code == 405
    assert "error" in response.json()


def test_an_image_named_like_an_action_is_still_found(app: Starlette) -> None:
    response = get(app, "/api/v1/images/acme/history")
    assert response.status_code == 200
    assert response.json()["reference"] == HUB_NAMED_HISTORY


# --------------------------------------------------------------------------- history and events


def event(kind: EventType, at: datetime, image: str = ALPINE, **fields: Any) -> Event:
    return Event(
        id=new_event_id(at),
        type=kind,
        occurred_at=at,
        image=image,
        current_status=fields.pop("current_status", Status.PRESENT),
        checked_at=at,
        **fields,
    )


def record(engine: Engine, *evaluations: Evaluation, webhooks: Sequence[str] = ()) -> None:
    repository.record_evaluations(
        engine,
        prepared(list(evaluations), event_to_payload, lambda _e: webhooks),
        now=datetime.now(UTC),
    )


@pytest.fixture
def stored(engine: Engine) -> list[Event]:
    """Three events: alpine changed, nginx missing, alpine changed again."""
    first = event(EventType.TAG_CHANGED, T0, previous_digest=DIGEST_A, current_digest=DIGEST_B)
    second = event(
        EventType.TAG_MISSING,
        T0 + timedelta(minutes=10),
        image=NGINX,
        current_status=Status.MISSING,
        reason="manifest unknown",
    )
    third = event(
        EventType.TAG_CHANGED,
        T0 + timedelta(minutes=20),
        previous_digest=DIGEST_B,
        current_digest=DIGEST_A,
    )
    alpine = TagState(image=ALPINE, status=Status.PRESENT, decided_status=Status.PRESENT)
    record(
        engine,
        Evaluation(
            state=replace(alpine, digest=DIGEST_A, last_decided=T0 - timedelta(hours=1)),
            changed=True,
        ),
    )
    record(
        engine,
        Evaluation(
            state=replace(alpine, digest=DIGEST_B, last_decided=T0), events=(first,), changed=True
        ),
        webhooks=["ops"],
    )
    record(
        engine,
        Evaluation(
            state=TagState(image=NGINX, status=Status.MISSING, decided_status=Status.MISSING),
            events=(second,),
            changed=True,
        ),
    )
    record(
        engine,
        Evaluation(
            state=replace(alpine, digest=DIGEST_A, last_decided=third.occurred_at),
            events=(third,),
            changed=True,
        ),
        webhooks=["ops"],
    )
    deliveries = metadata.tables["deliveries"]
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == 1)
            .values(status="delivered", attempts=2, last_status_code=200)
        )
    return [first, second, third]


def test_history(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/images/alpine:3.20/history")
    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == ALPINE
    assert [row["digest"] for row in body["history"]] == [DIGEST_A, DIGEST_B, DIGEST_A]
    assert body["history"][1] == {
        "image": ALPINE,
        "recorded_at": "2026-11-27T05:40:20Z",
        "status": "present",
        "digest": DIGEST_B,
        "platforms": {},
        "event_id": stored[0].id,
    }
    assert [e["id"] for e in body["events"]] == [stored[0].id, stored[2].id]


def test_history_of_an_encoded_reference(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/images/docker.io%2Flibrary%2Falpine%3A3.20/history")
    assert response.status_code == 200
    assert response.json()["reference"] == ALPINE


def test_history_of_an_image_not_watched_is_404(app: Starlette) -> None:
    assert get(app, "/api/v1/images/busybox/history").status_code == 404


def test_events_oldest_first_in_the_webhook_shape(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/events")
    assert response.status_code == 200
    events = response.json()["events"]
    assert [e["id"] for e in events] == [e.id for e in stored]
    first = events[0]
    assert {key: value for key, value in first.items() if key != "deliveries"} == (
        event_to_payload(stored[0])
    )
    assert first["deliveries"] == [
        {"webhook": "ops", "status": "delivered", "attempts": 2, "last_status_code": 200}
    ]
    assert "deliveries" not in events[1]
    assert events[2]["deliveries"] == [
        {"webhook": "ops", "status": "pending", "attempts": 0, "last_status_code": None}
    ]


def test_events_since_an_id(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/events", params={"since": stored[0].id})
    assert [e["id"] for e in response.json()["events"]] == [stored[1].id, stored[2].id]
    response = get(app, "/api/v1/events", params={"since": stored[0].id.lower()})
    assert [e["id"] for e in response.json()["events"]] == [stored[1].id, stored[2].id]


def test_events_since_an_unknown_id_is_404(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/events", params={"since": new_event_id()})
    assert response.status_code == 404
    assert "unknown event id" in response.json()["error"]


@pytest.mark.parametrize(
    "since", ["2026-11-27T05:45:00Z", "2026-11-27T06:45:00+01:00", "2026-11-27T05:45:00.5Z"]
)
def test_events_since_a_time(app: Starlette, stored: list[Event], since: str) -> None:
    response = get(app, "/api/v1/events", params={"since": since})
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["events"]] == [stored[1].id, stored[2].id]


@pytest.mark.parametrize("since", ["yesterday", "2026-11-27", "2026-11-27T05:45:00", "12"])
def test_events_since_anything_else_is_400(app: Starlette, since: str) -> None:
    response = get(app, "/api/v1/events", params={"since": since})
    assert response.status_code == 400
    assert response.json()["error"].startswith("since:")


def test_events_by_type(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/events?type=tag.missing")
    assert [e["id"] for e in response.json()["events"]] == [stored[1].id]
    response = get(app, "/api/v1/events?type=tag.missing&type=tag.changed")
    assert len(response.json()["events"]) == 3
    response = get(app, "/api/v1/events?type=tag.missing,check.failing")
    assert [e["id"] for e in response.json()["events"]] == [stored[1].id]
    response = get(app, "/api/v1/events?type=tag.exploded")
    assert response.status_code == 400


def test_events_by_image_and_limit(app: Starlette, stored: list[Event]) -> None:
    response = get(app, "/api/v1/events", params={"image": "alpine:3.20", "limit": "1"})
    assert [e["id"] for e in response.json()["events"]] == [stored[0].id]
    assert get(app, "/api/v1/events?limit=0").status_code == 400
    assert get(app, "/api/v1/events?limit=x").status_code == 400
    assert get(app, "/api/v1/events?image=Bad/Ref:").status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"since": "9999-12-31T23:59:59-14:00"},  # past datetime.max once in UTC
        {"since": "0001-01-01T00:00:00+14:00"},  # before datetime.min once in UTC
        {"limit": "9" * 5000},  # past Python's 4,300-digit int() guard
        {"limit": "0" * 5000 + "7"},
    ],
    ids=["since-max", "since-min", "limit-5000-digits", "limit-leading-zeros"],
)
def test_events_query_at_the_edges_is_a_one_line_400(
    app: Starlette, stored: list[Event], params: dict[str, str]
) -> None:
    response = get(app, "/api/v1/events", params=params)
    if params.get("limit", "").endswith("7"):
        assert response.status_code == 200  # 0…07 is 7: refused only for its size, not zeros
        assert len(response.json()["events"]) == 3
        return
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    (name,) = params
    expected = {
        "since": "since: expected an event id or an RFC 3339 time like 2026-11-27T05:40:20Z",
        "limit": "limit: expected a whole number from 1 to 1000",
    }[name]
    assert response.json() == {"error": expected}


# --------------------------------------------------------------------------- POST check


def test_post_check_is_refused_without_a_configured_token(app: Starlette, view: FakeView) -> None:
    response = call(
        app, "POST", "/api/v1/images/alpine:3.20/check", headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 403
    assert response.json() == {"error": "POST endpoints are disabled: set api_token"}
    assert view.checked == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer héllo".encode()},
    ],
)
def test_post_check_with_a_wrong_token_is_401(engine: Engine, headers: dict[str, Any]) -> None:
    view = make_view(engine, token=TOKEN)
    response = call(make_app(view), "POST", "/api/v1/images/alpine:3.20/check", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert view.checked == []


def test_post_check_with_the_token_checks_now(engine: Engine) -> None:
    view = make_view(engine, token=TOKEN)
    app = make_app(view)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = call(app, "POST", "/api/v1/images/alpine%3A3.20/check", headers=auth)
    assert response.status_code == 200
    assert view.checked == [ALPINE]
    body = response.json()
    assert body["reference"] == ALPINE
    assert body["digest"] == DIGEST_B
    assert body["last_checked"] == "2026-11-27T06:40:20Z"

    assert call(app, "POST", "/api/v1/images/busybox/check", headers=auth).status_code == 404
    assert call(app, "POST", "/api/v1/images/alpine:3.20", headers=auth).status_code == 405
    assert get(app, "/api/v1/images/alpine:3.20/check").status_code == 405
    assert view.checked == [ALPINE]


# --------------------------------------------------------------------------- status page


def test_status_page(app: Starlette, view: FakeView) -> None:
    view.state_map[APP] = TagState(
        image=APP, status=Status.ERROR, reason=Reason.TIMEOUT, last_checked=T0
    )
    response = get(app, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for reference in (ALPINE, NGINX, APP, HUB_NAMED_HISTORY):
        assert reference in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'title="{DIGEST_A}"' in page
    assert "2026-11-27T05:40:20Z" in page
    assert " ago" in page
    assert '<meta http-equiv="refresh" content="30">' in page
    for status in ("present", "missing", "error", "unknown"):
        assert f'class="badge {status}"' in page
    assert "hookpass" not in page


def test_status_page_never_shows_secrets(engine: Engine) -> None:
    view = make_view(engine, token=TOKEN)
    page = get(make_app(view), "/").text
    assert TOKEN not in page
    assert "hookpass" not in page


def test_a_store_failure_is_a_json_500_without_details(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    try:
        app = make_app(FakeView(config=parse_config(WATCHES), engine=engine))

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
                return await client.get("/api/v1/events")

        response = asyncio.run(go())
    finally:
        engine.dispose()
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}


# --------------------------------------------------------------------------- security headers

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/api/v1/images", 200),
        ("GET", "/api/v1/images/alpine:3.20", 200),
        ("GET", "/api/v1/images/alpine:3.20/history", 200),
        ("GET", "/api/v1/events", 200),
        ("GET", "/api/v1/events?limit=0", 400),
        ("GET", "/api/v1/images/busybox:1", 404),
        ("GET", "/api/v1/nothing", 404),
        ("GET", "/nothing", 404),
        ("POST", "/healthz", 405),
        ("POST", "/api/v1/images/alpine:3.20/check", 403),
    ],
)
def test_security_headers_on_every_response(
    app: Starlette, method: str, path: str, status: int
) -> None:
    response = call(app, method, path)
    assert response.status_code == status
    for name, value in SECURITY.items():
        assert response.headers.get_list(name) == [value], name
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "script-src" not in policy and "unsafe-inline" not in policy


def test_the_content_security_policy_allows_exactly_the_status_page_style(app: Starlette) -> None:
    import base64
    import hashlib
    import re

    response = get(app, "/")
    (style,) = re.findall(r"<style>(.*?)</style>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives == {
        "default-src": "'none'",
        "style-src": f"'sha256-{digest}'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    assert "<script" not in response.text and " style=" not in response.text


def test_security_headers_on_a_500(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    try:
        app = make_app(FakeView(config=parse_config(WATCHES), engine=engine))

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
                return await client.get("/api/v1/events")

        response = asyncio.run(go())
    finally:
        engine.dispose()
    assert response.status_code == 500
    for name, value in SECURITY.items():
        assert response.headers[name] == value
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
