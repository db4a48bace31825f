"""The JSON shapes of the HTTP API (SPEC §8), shared with ``regmon status`` and
``regmon history``: pure functions over watches, tag states and store rows.

``ImageIndex`` is the image listing in reference order, built once per set of
watches, so a page out of 50,000 watches costs a bisect and its own rows, not a sort.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from itertools import compress, islice, repeat
from typing import TYPE_CHECKING, Any, Final

from monitor.domain import Status
from monitor.records import RepositoryState, TagState
from monitor.wire import format_timestamp

if TYPE_CHECKING:
    from monitor.config import Watch
    from monitor.store.outbox import DeliveryState

__all__ = [
    "STATUS_NAMES",
    "UNKNOWN",
    "ImageIndex",
    "ImagePage",
    "history_body",
    "image_object",
    "image_summary",
    "images_body",
    "repository_object",
    "status_name",
    "with_deliveries",
]

UNKNOWN: Final = "unknown"
# What a listing filters on: the check statuses, and ``unknown`` for a tag never checked.
STATUS_NAMES: Final = (*(str(status) for status in Status), UNKNOWN)


# --------------------------------------------------------------------------- images


def image_object(watch: Watch, state: TagState | None) -> dict[str, Any]:
    """The JSON object of one watched tag; ``None`` for what is not known yet."""
    ref = watch.image
    state = state if state is not None else TagState(image=watch.key)
    return {
        "reference": watch.key,
        "registry": ref.registry,
        "repository": ref.repository,
        "tag": ref.tag,
        "status": _text(state.status),
        "decided_status": _text(state.decided_status),
        "digest": state.digest,
        "media_type": state.media_type,
        "platforms": dict(state.platforms),
        "watched_platforms": list(watch.platforms),
        "reason": _text(state.reason),
        "detail": state.detail,
        "first_seen": _time(state.first_seen),
        "last_checked": _time(state.last_checked),
        "last_decided": _time(state.last_decided),
        "last_changed": _time(state.last_changed),
        "consecutive_misses": state.consecutive_misses,
        "consecutive_errors": state.consecutive_errors,
        "digest_changes": state.digest_changes,
        "interval_seconds": watch.interval,
        "cron": watch.cron,
        "source": watch.source,
        "places": list(watch.places),
        "newer_version": state.newer_version,
    }


def repository_object(
    repository: RepositoryState, states: Mapping[str, TagState]
) -> dict[str, Any]:
    """The JSON object of one repository watch: its last listing and its selected tags."""
    tags = []
    for key in repository.tags:
        state = states.get(key)
        tags.append(
            {
                "reference": key,
                "tag": key.rpartition(":")[2],
                "status": status_name(state),
                "digest": state.digest if state is not None else None,
            }
        )
    return {
        "repository": repository.key,
        "status": _text(repository.status),
        "reason": _text(repository.reason),
        "detail": repository.detail,
        "listed_at": _time(repository.listed_at),
        "listed": repository.listed,
        "selected": len(repository.tags),
        "tags": tags,
    }


def image_summary(watch: Watch, state: TagState | None) -> dict[str, Any]:
    """The short form ``regmon status`` shows: an error's reason, else the detail."""
    image = image_object(watch, state)
    return {
        "reference": image["reference"],
        "status": image["status"],
        "digest": image["digest"],
        "reason": image["reason"] or image["detail"],
        "last_checked": image["last_checked"],
        "last_changed": image["last_changed"],
        "source": image["source"],
        "places": image["places"],
    }


def status_name(state: TagState | None) -> str:
    """One of ``STATUS_NAMES``."""
    if state is None or state.status is None:
        return UNKNOWN
    return str(state.status)


@dataclass(frozen=True, slots=True)
class ImagePage:
    """One page of the listing; ``next_after`` is the cursor of the next page, if any."""

    rows: list[tuple[Watch, TagState | None]]
    next_after: str | None


class ImageIndex:
    """The watches sorted by reference, for keyset pages (``after`` a reference).

    A cursor is a reference, not a position: a page resumes after it whether or
    not it is still watched, so watches added or removed between two pages never
    make the next one repeat or skip a watch that stayed.
    """

    def __init__(self, watches: Sequence[Watch]) -> None:
        self.source = tuple(watches)
        self._source_keys = [watch.key for watch in self.source]
        order = sorted(range(len(self.source)), key=self._source_keys.__getitem__)
        self._sorted = [self.source[i] for i in order]
        self._keys = [watch.key for watch in self._sorted]
        self._order = order  # config positions, in reference order

    def is_for(self, watches: Sequence[Watch]) -> bool:
        """Whether ``watches`` are the very objects this index was built from (cheap)."""
        return len(watches) == len(self.source) and all(map(operator.is_, watches, self.source))

    def statuses(self, states: Mapping[str, TagState]) -> list[Status | None]:
        """The status of every watch, in config order (``None``: never checked)."""
        # Lookups in config order, the order states are made in: at 50,000 watches a
        # pass in reference order costs 2-3 times more in cache misses.
        return list(map(_STATUS_OF, map(states.get, self._source_keys, repeat(_NEVER_CHECKED))))

    def page(
        self,
        states: Mapping[str, TagState],
        *,
        limit: int,
        after: str | None = None,
        statuses: Collection[str] = (),
        found: Sequence[Status | None] | None = None,
    ) -> ImagePage:
        """Up to ``limit`` watches after ``after`` whose ``status_name`` is in ``statuses``
        (all when empty); ``found`` is ``self.statuses(states)`` if the caller has it."""
        start = 0 if after is None else bisect.bisect_right(self._keys, after)
        if statuses:
            wanted = {None if name == UNKNOWN else Status(name) for name in statuses}
            found = self.statuses(states) if found is None else found
            # C-level all the way: a rare status is one cheap pass over every watch.
            flags = map(
                wanted.__contains__, map(found.__getitem__, islice(self._order, start, None))
            )
            chosen = list(islice(compress(islice(self._sorted, start, None), flags), limit + 1))
        else:
            chosen = self._sorted[start : start + limit + 1]
        rows = [(watch, states.get(watch.key)) for watch in chosen[:limit]]
        return ImagePage(rows, rows[-1][0].key if len(chosen) > limit else None)

    def counts(
        self, states: Mapping[str, TagState], found: Sequence[Status | None] | None = None
    ) -> dict[str, int]:
        """How many watches are in each of ``STATUS_NAMES``, in that order."""
        found = self.statuses(states) if found is None else found
        counts = {str(status): found.count(status) for status in Status}
        counts[UNKNOWN] = found.count(None)
        return counts


_NEVER_CHECKED: Final = TagState(image="")
_STATUS_OF: Final = operator.attrgetter("status")


def images_body(rows: Iterable[tuple[Watch, TagState | None]], next_link: str | None) -> Any:
    """One page of ``GET /api/v1/images``; ``next_link`` fetches the page after it."""
    return {"images": [image_object(watch, state) for watch, state in rows], "next": next_link}


# --------------------------------------------------------------------------- history and events


def with_deliveries(
    payloads: Sequence[dict[str, Any]], deliveries: Mapping[str, Sequence[DeliveryState]]
) -> list[dict[str, Any]]:
    """Add ``deliveries`` to each event payload that has some (``deliveries`` by event id)."""
    out: list[dict[str, Any]] = []
    for payload in payloads:
        found = deliveries.get(payload.get("id", ""))
        if not found:
            out.append(payload)
            continue
        shown = [
            {
                "webhook": d.webhook,
                "status": d.status,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
            }
            for d in found
        ]
        out.append({**payload, "deliveries": shown})
    return out


def history_body(key: str, rows: Iterable[Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /api/v1/images/{ref}/history`` and ``regmon history --json``."""
    return {"reference": key, "history": [_jsonable(row) for row in rows], "events": events}


def _jsonable(value: Any) -> Any:
    """Store rows (dataclasses of datetimes, enums, mappings) as JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: _jsonable(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(name): _jsonable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _text(value: Enum | None) -> str | None:
    return None if value is None else str(value.value)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)
