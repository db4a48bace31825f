"""The query parameters of the HTTP API, validated: each bad one is a one-line 400
that names it (``limit: expected a whole number from 1 to 1000``).

Pure: ``params`` is anything with ``get``/``getlist`` (Starlette's ``QueryParams``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol
from urllib.parse import urlencode

from monitor.errors import InvalidReference
from monitor.ids import is_event_id
from monitor.records import EventType
from monitor.reference import parse_reference
from monitor.web.views import STATUS_NAMES
from monitor.wire import parse_timestamp

__all__ = [
    "DEFAULT_PAGE",
    "MAX_EVENTS",
    "MAX_PAGE",
    "EventQuery",
    "HTTPError",
    "ImageQuery",
    "QueryParams",
    "normalize_reference",
    "one_line",
]

MAX_EVENTS: Final = 1000
# A page of the image listing: 500 rows of the status page are ~350 kB of HTML.
DEFAULT_PAGE: Final = 500
MAX_PAGE: Final = 5000
_EVENT_TYPES: Final = frozenset(str(kind) for kind in EventType)


class QueryParams(Protocol):
    """What is read of a query string (Starlette's ``QueryParams`` is one)."""

    def get(self, key: str, /) -> str | None: ...

    def getlist(self, key: str, /) -> list[str]: ...

    def __contains__(self, key: object) -> bool: ...


class HTTPError(Exception):
    """An error answer: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def one_line(text: str) -> str:
    return " ".join(text.split())


def normalize_reference(text: str, name: str | None = None) -> str:
    """The normalized reference; ``name`` prefixes the 400 of a query parameter."""
    try:
        return str(parse_reference(text.strip()))
    except InvalidReference as exc:
        prefix = f"{name}: " if name else ""
        raise HTTPError(400, one_line(f"{prefix}{exc}")) from None


# --------------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """The validated query of ``GET /api/v1/images`` and the status page."""

    paged: bool
    limit: int
    given_limit: int | None
    after: str | None
    statuses: tuple[str, ...]

    @classmethod
    def parse(cls, params: QueryParams) -> ImageQuery:
        given = params.get("limit")
        limit = _parse_limit(given, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        after = params.get("after")
        return cls(
            # Without any of these, today's answer: every watch in config order.
            paged=any(name in params for name in ("limit", "after", "status")),
            limit=limit,
            given_limit=limit if given else None,
            after=normalize_reference(after, "after") if after else None,
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
        raise HTTPError(400, one_line(f"status: unknown status {unknown[0]!r} ({known})"))
    return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------- events


class EventQuery:
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
    def parse(cls, params: QueryParams) -> EventQuery:
        return cls(
            since=_parse_since(params.get("since")),
            types=_parse_types(params.getlist("type")),
            image=normalize_reference(image) if (image := params.get("image")) else None,
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
    raise HTTPError(
        400, "since: expected an event id or an RFC 3339 time like 2026-11-27T05:40:20Z"
    )


def _parse_types(values: Sequence[str]) -> list[str] | None:
    types = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [kind for kind in types if kind not in _EVENT_TYPES]
    if unknown:
        known = ", ".join(sorted(_EVENT_TYPES))
        raise HTTPError(400, one_line(f"type: unknown event type {unknown[0]!r} ({known})"))
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
        raise HTTPError(400, f"limit: expected a whole number from 1 to {maximum}")
    return int(digits)
