"""Pages of ``GET /api/v1/images`` and of the status page: keyset on the reference,
filters by status, exact next links, one-line 400s with the security headers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from support.fakes import FakeView

from monitor.config import parse_config, resolve_watches
from monitor.domain import Reason, Status
from monitor.records import TagState
from monitor.reference import parse_reference
from monitor.web.app import create_app
from monitor.web.views import ImageIndex

# Config order on purpose not reference order.
IMAGES = ["quay.io/b/x:1", "ghcr.io/a/x:1", "docker.io/library/zeta:1", "docker.io/library/alpha:1",
          "ghcr.io/a/x:2", "registry.example.com/team/app:3", "docker.io/acme/mid:1"]  # fmt: skip
SORTED = sorted(str(parse_reference(image)) for image in IMAGES)
KNOWN = "(denied, error, missing, present, unknown)"
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def config_text(images: list[str]) -> str:
    return "watch:\n" + "".join(f"  - image: {image}\n" for image in images)


@pytest.fixture
def view(engine: Engine) -> FakeView:
    view = FakeView(config=parse_config(config_text(IMAGES)), engine=engine)
    # alpha present, ghcr.io/a/x:1 missing, quay error, zeta denied, the rest never checked.
    for key, status in [
        ("docker.io/library/alpha:1", Status.PRESENT),
        ("ghcr.io/a/x:1", Status.MISSING),
        ("quay.io/b/x:1", Status.ERROR),
        ("docker.io/library/zeta:1", Status.DENIED),
    ]:
        view.state_map[key] = TagState(
            image=key,
            status=status,
            reason=Reason.TIMEOUT if status is Status.ERROR else None,
            digest="sha256:" + "a" * 64 if status is Status.PRESENT else None,
        )
    return view


@pytest.fixture
def app(view: FakeView) -> Starlette:
    return create_app(view, CollectorRegistry())


def get(app: Starlette, url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://regmon") as client:
            return await client.get(url)

    return asyncio.run(go())


def refs(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [image["reference"] for image in response.json()["images"]]


def test_pages_are_exact_and_in_reference_order(app: Starlette) -> None:
    assert SORTED == [
        "docker.io/acme/mid:1",
        "docker.io/library/alpha:1",
        "docker.io/library/zeta:1",
        "ghcr.io/a/x:1",
        "ghcr.io/a/x:2",
        "quay.io/b/x:1",
        "registry.example.com/team/app:3",
    ]
    first = get(app, "/api/v1/images?limit=3")
    assert refs(first) == SORTED[:3]
    assert first.json()["next"] == "/api/v1/images?limit=3&after=docker.io%2Flibrary%2Fzeta%3A1"
    second = get(app, first.json()["next"])
    assert refs(second) == SORTED[3:6]
    assert second.json()["next"] == "/api/v1/images?limit=3&after=quay.io%2Fb%2Fx%3A1"
    third = get(app, second.json()["next"])
    assert refs(third) == SORTED[6:]
    assert third.json()["next"] is None
    # A page that ends exactly at the last watch has no next link.
    assert get(app, "/api/v1/images?limit=7").json()["next"] is None
    assert get(app, "/api/v1/images?limit=6").json()["next"] is not None


def test_a_page_holds_the_same_image_objects_as_the_whole_list(app: Starlette) -> None:
    whole = {image["reference"]: image for image in get(app, "/api/v1/images").json()["images"]}
    page = get(app, "/api/v1/images?limit=500").json()
    assert page == {"images": [whole[ref] for ref in SORTED], "next": None}


def test_without_page_parameters_the_answer_is_as_before(app: Starlette) -> None:
    body = get(app, "/api/v1/images").json()
    assert list(body) == ["images"]
    assert [image["reference"] for image in body["images"]] == [
        str(parse_reference(image)) for image in IMAGES
    ]


def test_after_any_reference_spelling_and_unwatched(app: Starlette) -> None:
    assert refs(get(app, "/api/v1/images?after=library/alpha:1")) == SORTED[2:]
    # A cursor need not be watched: the page starts after where it would sort.
    assert refs(get(app, "/api/v1/images?after=ghcr.io/a/x:10")) == SORTED[4:]
    assert refs(get(app, "/api/v1/images?after=zzz.example.com/x:1")) == []


def test_the_cursor_holds_across_watches_added_and_removed(app: Starlette, view: FakeView) -> None:
    first = get(app, "/api/v1/images?limit=3").json()
    assert [image["reference"] for image in first["images"]] == SORTED[:3]
    # Reload: the cursor's own watch goes, one appears before it and one after it.
    changed = [image for image in IMAGES if image != "docker.io/library/zeta:1"]
    view.config = parse_config(config_text([*changed, "docker.io/aaa/new:1", "ghcr.io/a/x:15"]))
    second = get(app, first["next"])
    assert refs(second) == ["ghcr.io/a/x:1", "ghcr.io/a/x:15", "ghcr.io/a/x:2"]
    assert refs(get(app, second.json()["next"])) == [
        "quay.io/b/x:1",
        "registry.example.com/team/app:3",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=present", ["docker.io/library/alpha:1"]),
        ("status=missing,denied", ["docker.io/library/zeta:1", "ghcr.io/a/x:1"]),
        ("status=error&status=missing", ["ghcr.io/a/x:1", "quay.io/b/x:1"]),
        ("status=unknown", ["docker.io/acme/mid:1", "ghcr.io/a/x:2", SORTED[-1]]),
        ("status=missing,%20missing", ["ghcr.io/a/x:1"]),
    ],
)  # fmt: skip
def test_status_filter(app: Starlette, query: str, expected: list[str]) -> None:
    response = get(app, f"/api/v1/images?{query}")
    assert refs(response) == expected
    assert response.json()["next"] is None


def test_status_filter_pages(app: Starlette) -> None:
    first = get(app, "/api/v1/images?status=unknown,error&limit=2").json()
    assert [image["reference"] for image in first["images"]] == [
        "docker.io/acme/mid:1",
        "ghcr.io/a/x:2",
    ]
    assert (
        first["next"] == "/api/v1/images?limit=2&after=ghcr.io%2Fa%2Fx%3A2&status=unknown%2Cerror"
    )
    second = get(app, first["next"]).json()
    assert [image["reference"] for image in second["images"]] == [
        "quay.io/b/x:1",
        "registry.example.com/team/app:3",
    ]
    assert second["next"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: expected a whole number from 1 to 5000"),
        ("limit=5001", "limit: expected a whole number from 1 to 5000"),
        ("limit=-1", "limit: expected a whole number from 1 to 5000"),
        ("limit=" + "9" * 5000, "limit: expected a whole number from 1 to 5000"),
        ("status=gone", f"status: unknown status 'gone' {KNOWN}"),
        ("status=present,Present", f"status: unknown status 'Present' {KNOWN}"),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_one_line_400(app: Starlette, query: str, message: str) -> None:
    response = get(app, f"/api/v1/images?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}
    for name, value in SECURITY.items():
        assert response.headers[name] == value
    page = get(app, f"/?{query}")
    assert page.status_code == 400
    assert page.text == message
    for name, value in SECURITY.items():
        assert page.headers[name] == value
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_bad_cursor_is_a_one_line_400(app: Starlette) -> None:
    response = get(app, "/api/v1/images?after=Bad/Ref%0A:")
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("after: invalid image reference")
    assert "\n" not in message


# --------------------------------------------------------------------------- status page


def rows_of(page: str) -> list[str]:
    return re.findall(r"<tr><td><code>([^<]+)</code>", page)


def test_status_page_pages_in_reference_order(app: Starlette) -> None:
    first = get(app, "/?limit=3")
    assert first.status_code == 200
    assert rows_of(first.text) == SORTED[:3]
    assert "3 of 7 shown." in first.text
    nexts = re.findall(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert nexts == ["/?limit=3&amp;after=docker.io%2Flibrary%2Fzeta%3A1"] * 2  # above and below
    assert "First page" not in first.text
    second = get(app, nexts[0].replace("&amp;", "&"))
    assert rows_of(second.text) == SORTED[3:6]
    assert "3 of 7 shown after <code>docker.io/library/zeta:1</code>." in second.text
    assert '<a href="/?limit=3">First page</a>' in second.text
    third = get(app, "/?limit=3&after=quay.io/b/x:1")
    assert rows_of(third.text) == SORTED[6:]
    assert "Next page" not in third.text


def test_status_page_counts_link_to_filters(app: Starlette) -> None:
    page = get(app, "/?status=missing").text
    assert rows_of(page) == ["ghcr.io/a/x:1"]
    summary = re.search(r'<ul class="counts">(.*?)</ul>', page)
    assert summary is not None
    assert summary.group(1) == (
        '<li><a class="badge present" href="/?status=present">present</a> 1</li>'
        '<li><a class="badge missing on" href="/?status=missing">missing</a> 1</li>'
        '<li><a class="badge denied" href="/?status=denied">denied</a> 1</li>'
        '<li><a class="badge error" href="/?status=error">error</a> 1</li>'
        '<li><a class="badge unknown" href="/?status=unknown">unknown</a> 3</li>'
        '<li><a href="/">all</a> 7</li>'
    )
    assert "1 of 1 shown." in page
    assert "<title>regmon: 7 watched tags</title>" in page


def test_status_page_default_page_size(engine: Engine) -> None:
    images = [f"registry.example.com/team/app:v{i:03}" for i in range(501)]
    view = FakeView(config=parse_config(config_text(images)), engine=engine)
    page = get(create_app(view, CollectorRegistry()), "/").text
    assert len(rows_of(page)) == 500
    assert "500 of 501 shown." in page
    assert 'href="/?after=registry.example.com%2Fteam%2Fapp%3Av499" rel="next"' in page
    body = get(create_app(view, CollectorRegistry()), "/api/v1/images?status=unknown").json()
    assert len(body["images"]) == 500
    assert body["next"] == (
        "/api/v1/images?limit=500&after=registry.example.com%2Fteam%2Fapp%3Av499&status=unknown"
    )


def test_status_page_of_a_filter_with_no_match(app: Starlette) -> None:
    page = get(app, "/?status=present&after=docker.io/library/alpha:1").text
    assert rows_of(page) == []
    assert '<td colspan="6" class="muted">No watched tags on this page.</td>' in page


# --------------------------------------------------------------------------- the index


def test_the_index_is_kept_for_the_same_watches_only() -> None:
    watches = resolve_watches(parse_config(config_text(IMAGES)))
    index = ImageIndex(watches)
    assert index.is_for(list(watches))
    assert not index.is_for(resolve_watches(parse_config(config_text(IMAGES))))  # a reload
    assert not index.is_for(watches[:-1])


def test_the_index_counts_every_status() -> None:
    watches = resolve_watches(parse_config(config_text(IMAGES)))
    states: dict[str, Any] = {
        "ghcr.io/a/x:1": TagState(image="ghcr.io/a/x:1", status=Status.MISSING),
        "ghcr.io/a/x:2": TagState(image="ghcr.io/a/x:2"),  # a state, never checked
        "quay.io/gone/x:1": TagState(image="quay.io/gone/x:1", status=Status.PRESENT),
    }
    assert ImageIndex(watches).counts(states) == {
        "present": 0,
        "missing": 1,
        "denied": 0,
        "error": 0,
        "unknown": 6,
    }
