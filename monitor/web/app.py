"""The HTTP API (SPEC §8): /metrics, /healthz, /readyz, /api/v1 and the status page.

A Starlette app over a ``ServiceView``; the service runs it with uvicorn. The
shapes are ``monitor.web.views``, the page ``monitor.web.page``; here are the
routes, their parameters, the token check and the security headers.
Every database read runs in ``asyncio.to_thread`` (the store is synchronous).

Image routes take the reference raw or percent-encoded
(``/api/v1/images/alpine:3.20``, ``/api/v1/images/docker.io%2Flibrary%2Falpine%3A3.20``)
and normalize it like the docker CLI, so any spelling finds its ``Watch.key``.
A ``{ref:path}`` parameter is greedy, so one route takes the rest of the path
and a trailing ``/history`` or ``/check`` is split off here.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.domain import EventType
from monitor.errors import InvalidReference
from monitor.ids import is_event_id
from monitor.reference import parse_reference
from monitor.web.page import PAGE_CSS_HASH, render_status_page
from monitor.web.reads import read_events, read_history
from monitor.web.views import (
    STATUS_NAMES,
    ImageIndex,
    image_object,
    images_body,
)
from monitor.wire import parse_timestamp

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Watch
    from monitor.view import ServiceView

__all__ = ["DEFAULT_PAGE", "MAX_EVENTS", "MAX_PAGE", "SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)

MAX_EVENTS: Final = 1000
# A page of the image listing: 500 rows of the status page are ~350 kB of HTML.
DEFAULT_PAGE: Final = 500
MAX_PAGE: Final = 5000
_IMAGES_PREFIX: Final = "/api/v1/images/"
_EVENT_TYPES: Final = frozenset(str(kind) for kind in EventType)

SECURITY_HEADERS: Final = {
    "content-security-policy": (
        f"default-src 'none'; style-src 'sha256-{PAGE_CSS_HASH}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class _HTTPError(Exception):
    """An error answer: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def create_app(view: ServiceView, metrics_registry: CollectorRegistry) -> Starlette:
    """The regmon web app over ``view``; ``/metrics`` exposes ``metrics_registry``."""

    async def metrics(request: Request) -> Response:
        # Prometheus negotiates the format; without an Accept header this is text 0.0.4,
        # the format ``generate_latest`` writes. The scrape reads the database: off the loop.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, metrics_registry)
        return Response(body, headers={"Content-Type": content_type})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            ready = await asyncio.to_thread(view.is_ready)
        except Exception:
            log.warning("readiness probe failed", exc_info=True)
            ready = False
        if ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    def _images_body() -> bytes:
        states = view.states()
        images = [image_object(watch, states.get(watch.key)) for watch in view.watches()]
        return bytes(JSONResponse({"images": images}).body)

    index = _IndexCache()

    def _page_body(query: _ImageQuery) -> bytes:
        states = view.states()
        page = index.get(view.watches()).page(
            states, limit=query.limit, after=query.after, statuses=query.statuses
        )
        next_link = None
        if page.next_after is not None:
            next_link = query.link("/api/v1/images", page.next_after)
        return bytes(JSONResponse(images_body(page.rows, next_link)).body)

    async def images(request: Request) -> Response:
        try:
            query = _ImageQuery.from_request(request)
        except _HTTPError as exc:
            return _error(exc)
        # Built in a worker thread: all 10,000 watches take ~200 ms, which
        # would otherwise stall every check in flight on the event loop.
        if query.paged:
            body = await asyncio.to_thread(_page_body, query)
        else:
            body = await asyncio.to_thread(_images_body)
        return Response(body, media_type="application/json")

    async def image_route(request: Request) -> Response:
        try:
            return await _image_route(request)
        except _HTTPError as exc:
            return _error(exc)

    async def _image_route(request: Request) -> Response:
        rest = str(request.path_params["rest"])
        action, raw_ref = _split_action(request, rest)
        if request.method == "POST":
            if action != "check":
                raise _HTTPError(405, "only POST /api/v1/images/{ref}/check", {"Allow": "GET"})
            _authorize(request, view.config.api_token)
            watch = _find_watch(view, raw_ref)
            from monitor.store.engine import StoreError

            try:
                state = await view.check_now(watch.key)
            except KeyError:
                raise _HTTPError(404, f"not watched: {watch.key}") from None
            except StoreError as exc:  # checked, but not recorded: the database fails
                raise _HTTPError(503, _one_line(str(exc)), {"Retry-After": "30"}) from None
            return JSONResponse(image_object(watch, state))
        if action == "check":
            whole = _whole_or_none(view, rest)  # docker.io/acme/check is a name too
            if whole is None:
                raise _HTTPError(405, "use POST to check now", {"Allow": "POST"})
            return JSONResponse(image_object(whole, view.states().get(whole.key)))
        if action == "history":
            try:
                watch = _find_watch(view, raw_ref)
            except _HTTPError:
                # ``/api/v1/images/acme/history`` may also name docker.io/acme/history.
                whole = _whole_or_none(view, rest)
                if whole is None:
                    raise
                return JSONResponse(image_object(whole, view.states().get(whole.key)))
            body = await asyncio.to_thread(read_history, view.engine, watch.key)
            return JSONResponse(body)
        watch = _find_watch(view, raw_ref)
        return JSONResponse(image_object(watch, view.states().get(watch.key)))

    async def events(request: Request) -> Response:
        try:
            query = _EventQuery.from_request(request)
            payloads = await asyncio.to_thread(_read_events, view.engine, query)
        except _HTTPError as exc:
            return _error(exc)
        return JSONResponse({"events": payloads})

    def _status_page(query: _ImageQuery) -> str:
        states = view.states()
        listing = index.get(view.watches())
        found = listing.statuses(states)  # once for the counts and the filter
        page = listing.page(
            states, limit=query.limit, after=query.after, statuses=query.statuses, found=found
        )
        return render_status_page(
            page,
            counts=listing.counts(states, found),
            now=datetime.now(UTC),
            statuses=query.statuses,
            after=query.after,
            limit=query.given_limit,
        )

    async def status_page(request: Request) -> Response:
        try:
            query = _ImageQuery.from_request(request)
        except _HTTPError as exc:
            return PlainTextResponse(exc.message, exc.status)
        body = await asyncio.to_thread(_status_page, query)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own 404/405 (no route, e.g. a path with a newline), as JSON for the API.
        if not isinstance(exc, HTTPException):  # pragma: no cover - registered for it only
            raise exc
        headers = dict(exc.headers or {})
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, exc.status_code, headers=headers)
        return PlainTextResponse(exc.detail, exc.status_code, headers=headers)

    async def server_error(_: Request, exc: Exception) -> Response:
        # Details go to the log, never to the client (they may name the database URL).
        log.error("unhandled error in the HTTP API", exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    routes = [
        Route("/", status_page, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/api/v1/images", images, methods=["GET"]),
        Route("/api/v1/images/{rest:path}", image_route, methods=["GET", "POST"]),
        Route("/api/v1/events", events, methods=["GET"]),
    ]
    return _App(routes=routes, exception_handlers={HTTPException: http_error, 500: server_error})


class _App(Starlette):
    """Starlette with the security headers outside its whole stack, 500 answers included."""

    def build_middleware_stack(self) -> ASGIApp:
        return _SecurityHeaders(super().build_middleware_stack())


class _SecurityHeaders:
    """Add ``SECURITY_HEADERS`` to every response the app sends."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self._app(scope, receive, with_headers)


# --------------------------------------------------------------------------- references


def _split_action(request: Request, rest: str) -> tuple[str | None, str]:
    """``(action, reference)``: a literal trailing ``/history`` or ``/check`` is an action.

    Judged on the raw path when there is one, so ``...%2Fhistory`` (an encoded
    slash) stays part of the reference.
    """
    raw_path = request.scope.get("raw_path")
    raw = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    raw = raw.split("?", 1)[0]
    for action in ("history", "check"):
        suffix = "/" + action
        if raw.endswith(suffix) and rest.endswith(suffix):
            return action, rest[: -len(suffix)]
    return None, rest


def _normalize(text: str, name: str | None = None) -> str:
    """The normalized reference; ``name`` prefixes the 400 of a query parameter."""
    try:
        return str(parse_reference(text.strip()))
    except InvalidReference as exc:
        prefix = f"{name}: " if name else ""
        raise _HTTPError(400, _one_line(f"{prefix}{exc}")) from None


def _find_watch(view: ServiceView, text: str) -> Watch:
    key = _normalize(text)
    for watch in view.watches():
        if watch.key == key:
            return watch
    raise _HTTPError(404, f"not watched: {key}")


def _whole_or_none(view: ServiceView, text: str) -> Watch | None:
    try:
        return _find_watch(view, text)
    except _HTTPError:
        return None


def _authorize(request: Request, token: str | None) -> None:
    if not token:
        raise _HTTPError(403, "POST endpoints are disabled: set api_token")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
        raise _HTTPError(
            401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="regmon"'}
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(exc: _HTTPError) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


# --------------------------------------------------------------------------- image listing


class _IndexCache:
    """The ``ImageIndex`` of the watches in force, rebuilt when they are other objects
    (a reload), so a page sorts nothing."""

    def __init__(self) -> None:
        self._index: ImageIndex | None = None

    def get(self, watches: Sequence[Watch]) -> ImageIndex:
        index = self._index
        if index is None or not index.is_for(watches):
            # Two threads may both rebuild after a reload: the same index, built twice.
            index = self._index = ImageIndex(watches)
        return index


@dataclass(frozen=True, slots=True)
class _ImageQuery:
    """The validated query of ``GET /api/v1/images`` and the status page."""

    paged: bool
    limit: int
    given_limit: int | None
    after: str | None
    statuses: tuple[str, ...]

    @classmethod
    def from_request(cls, request: Request) -> _ImageQuery:
        params = request.query_params
        given = params.get("limit")
        limit = _parse_limit(given, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        after = params.get("after")
        return cls(
            # Without any of these, today's answer: every watch in config order.
            paged=any(name in params for name in ("limit", "after", "status")),
            limit=limit,
            given_limit=limit if given else None,
            after=_normalize(after, "after") if after else None,
            statuses=_parse_statuses(params.getlist("status")),
        )

    def link(self, path: str, after: str) -> str:
        """``path`` with this query, resuming after ``after``."""
        query = {"limit": str(self.limit), "after": after}
        if self.statuses:
            query["status"] = ",".join(self.statuses)
        return f"{path}?{urlencode(query)}"


def _parse_statuses(values: Sequence[str]) -> tuple[str, ...]:
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in STATUS_NAMES]
    if unknown:
        known = ", ".join(sorted(STATUS_NAMES))
        raise _HTTPError(400, _one_line(f"status: unknown status {unknown[0]!r} ({known})"))
    return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------- events and history


class _EventQuery:
    """The validated query of ``GET /api/v1/events``."""

    def __init__(
        self,
        since: str | datetime | None,
        types: Sequence[str] | None,
        image: str | None,
        limit: int,
    ) -> None:
        self.since = since
        self.types = types
        self.image = image
        self.limit = limit

    @classmethod
    def from_request(cls, request: Request) -> _EventQuery:
        params = request.query_params
        return cls(
            since=_parse_since(params.get("since")),
            types=_parse_types(params.getlist("type")),
            image=_normalize(params["image"]) if params.get("image") else None,
            limit=_parse_limit(params.get("limit")),
        )


def _parse_since(text: str | None) -> str | datetime | None:
    if text is None or text == "":
        return None
    text = text.strip()
    if is_event_id(text):
        return text.upper()
    if "T" in text.upper():
        try:
            return parse_timestamp(text)
        except ValueError:
            pass
    raise _HTTPError(
        400, "since: expected an event id or an RFC 3339 time like 2026-11-27T05:40:20Z"
    )


def _parse_types(values: Sequence[str]) -> list[str] | None:
    types = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [kind for kind in types if kind not in _EVENT_TYPES]
    if unknown:
        known = ", ".join(sorted(_EVENT_TYPES))
        raise _HTTPError(400, _one_line(f"type: unknown event type {unknown[0]!r} ({known})"))
    return list(dict.fromkeys(types)) or None


def _parse_limit(text: str | None, *, maximum: int = MAX_EVENTS, default: int = MAX_EVENTS) -> int:
    if text is None or text == "":
        return default
    text = text.strip()
    # Length first: int() of a 5,000-digit string raises (Python's 4,300-digit guard).
    digits = text.lstrip("0")
    if (
        not (text.isascii() and text.isdigit())
        or len(digits) > len(str(maximum))
        or not 1 <= int(digits or "0") <= maximum
    ):
        raise _HTTPError(400, f"limit: expected a whole number from 1 to {maximum}")
    return int(digits)


def _read_events(engine: Engine, query: _EventQuery) -> list[dict[str, Any]]:
    from monitor.store.repository import UnknownEventError

    try:
        return read_events(
            engine, since=query.since, types=query.types, image=query.image, limit=query.limit
        )
    except UnknownEventError as exc:
        raise _HTTPError(
            404, f"since: unknown event id {exc.event_id} (never written, or pruned)"
        ) from None
