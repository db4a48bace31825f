"""The HTTP API (SPEC §8): /metrics, /healthz, /readyz, /api/v1 and the status page.

A Starlette app over a ``ServiceView``; the service runs it with uvicorn. The
shapes are ``monitor.web.views``, the page ``monitor.web.page``, the query
parameters ``monitor.web.queries``; here are the routes, the token check and
the security headers.
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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.metrics import exposition
from monitor.web.page import PAGE_CSS_HASH, render_status_page
from monitor.web.queries import (
    EventQuery,
    HTTPError,
    ImageQuery,
    normalize_reference,
    one_line,
)
from monitor.web.reads import read_events, read_history
from monitor.web.views import ImageIndex, image_object, images_body, repository_object

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Watch
    from monitor.view import ServiceView

__all__ = ["SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)

SECURITY_HEADERS: Final = {
    "content-security-policy": (
        f"default-src 'none'; style-src 'sha256-{PAGE_CSS_HASH}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def create_app(
    view: ServiceView,
    metrics_registry: CollectorRegistry,
    *,
    on_read: Callable[[bool], None] | None = None,
) -> Starlette:
    """The regmon web app over ``view``; ``/metrics`` exposes ``metrics_registry``.

    ``on_read(up)`` hears whether each database read worked (``regmon_database_up``).
    """
    from monitor.store.health import ReadHealth

    health = ReadHealth(on_read)

    async def read(function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in a worker thread; a database outage is a 503 with one line."""
        from monitor.store.health import is_outage

        try:
            result = await asyncio.to_thread(function, *args)
        except Exception as exc:
            if not is_outage(exc):
                raise
            raise HTTPError(503, one_line(health.failed(exc)), {"Retry-After": "30"}) from None
        health.ok()
        return result

    async def metrics(request: Request) -> Response:
        # Prometheus negotiates the format; without an Accept header this is text 0.0.4,
        # the format ``generate_latest`` writes. The scrape reads the database: off the loop.
        body, content_type = await asyncio.to_thread(
            exposition, metrics_registry, request.headers.get("accept", "")
        )
        return Response(body, headers={"Content-Type": content_type})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            ready = await asyncio.to_thread(view.is_ready)
        except Exception:
            log.warning("readiness probe failed", exc_info=True)
            ready = False
        role = "leader" if view.is_leader() else "follower"
        if ready:
            return JSONResponse({"status": "ready", "role": role})
        return JSONResponse({"status": "not ready", "role": role}, status_code=503)

    def _images_body() -> bytes:
        states = view.states()
        images = [image_object(watch, states.get(watch.key)) for watch in view.watches()]
        return bytes(JSONResponse({"images": images}).body)

    index = _IndexCache()

    def _page_body(query: ImageQuery) -> bytes:
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
            query = ImageQuery.parse(request.query_params)
        except HTTPError as exc:
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
        except HTTPError as exc:
            return _error(exc)

    async def _image_route(request: Request) -> Response:
        rest = str(request.path_params["rest"])
        action, raw_ref = _split_action(request, rest)
        if request.method == "POST":
            if action != "check":
                raise HTTPError(405, "only POST /api/v1/images/{ref}/check", {"Allow": "GET"})
            _authorize(request, view.config.api_token)
            watch = _find_watch(view, raw_ref)
            from monitor.store.engine import StoreError

            try:
                state = await view.check_now(watch.key)
            except KeyError:
                raise HTTPError(404, f"not watched: {watch.key}") from None
            except StoreError as exc:  # checked, but not recorded: the database fails
                raise HTTPError(503, one_line(str(exc)), {"Retry-After": "30"}) from None
            return JSONResponse(image_object(watch, state))
        if action == "check":
            whole = _whole_or_none(view, rest)  # docker.io/acme/check is a name too
            if whole is None:
                raise HTTPError(405, "use POST to check now", {"Allow": "POST"})
            return JSONResponse(image_object(whole, view.states().get(whole.key)))
        if action == "history":
            try:
                watch = _find_watch(view, raw_ref)
            except HTTPError:
                # ``/api/v1/images/acme/history`` may also name docker.io/acme/history.
                whole = _whole_or_none(view, rest)
                if whole is None:
                    raise
                return JSONResponse(image_object(whole, view.states().get(whole.key)))
            body = await read(read_history, view.engine, watch.key)
            return JSONResponse(body)
        watch = _find_watch(view, raw_ref)
        return JSONResponse(image_object(watch, view.states().get(watch.key)))

    async def repositories(_: Request) -> Response:
        states = view.states()
        shown = [repository_object(repo, states) for repo in view.repositories()]
        return JSONResponse({"repositories": shown})

    async def events(request: Request) -> Response:
        try:
            query = EventQuery.parse(request.query_params)
            payloads = await read(_read_events, view.engine, query)
        except HTTPError as exc:
            return _error(exc)
        return JSONResponse({"events": payloads})

    def _status_page(query: ImageQuery) -> str:
        states = view.states()
        listing = index.get(view.watches())
        found = listing.statuses(states)  # once for the counts and the filter
        page = listing.page(
            states, limit=query.limit, after=query.after, statuses=query.statuses, found=found
        )
        return render_status_page(
            page,
            repositories=[repository_object(repo, states) for repo in view.repositories()],
            counts=listing.counts(states, found),
            now=datetime.now(UTC),
            statuses=query.statuses,
            after=query.after,
            limit=query.given_limit,
        )

    async def status_page(request: Request) -> Response:
        try:
            query = ImageQuery.parse(request.query_params)
        except HTTPError as exc:
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
        Route("/api/v1/repositories", repositories, methods=["GET"]),
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


def _find_watch(view: ServiceView, text: str) -> Watch:
    key = normalize_reference(text)
    for watch in view.watches():
        if watch.key == key:
            return watch
    raise HTTPError(404, f"not watched: {key}")


def _whole_or_none(view: ServiceView, text: str) -> Watch | None:
    try:
        return _find_watch(view, text)
    except HTTPError:
        return None


def _authorize(request: Request, token: str | None) -> None:
    if not token:
        raise HTTPError(403, "POST endpoints are disabled: set api_token")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
        raise HTTPError(
            401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="regmon"'}
        )


def _error(exc: HTTPError) -> Response:
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


# --------------------------------------------------------------------------- events and history


def _read_events(engine: Engine, query: EventQuery) -> list[dict[str, Any]]:
    from monitor.store.repository import UnknownEventError

    try:
        return read_events(
            engine, since=query.since, types=query.types, image=query.image, limit=query.limit
        )
    except UnknownEventError as exc:
        raise HTTPError(
            404, f"since: unknown event id {exc.event_id} (never written, or pruned)"
        ) from None
