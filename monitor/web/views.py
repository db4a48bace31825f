"""The JSON shapes of the HTTP API (SPEC §8), shared with ``regmon status`` and
``regmon history``: pure functions over watches, tag states and store rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from monitor.domain import TagState
from monitor.wire import format_timestamp

if TYPE_CHECKING:
    from monitor.config import Watch
    from monitor.store.outbox import DeliveryState

__all__ = ["history_body", "image_object", "image_summary", "with_deliveries"]


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
    }


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
