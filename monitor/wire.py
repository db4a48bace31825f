"""The wire shapes (SPEC §6): an event's webhook ``json`` body and RFC 3339 timestamps.

Pure. The body is also what the store keeps and the API answers, and every
timestamp regmon writes or reads (bodies, API queries, CLI output) goes through
``format_timestamp`` / ``parse_timestamp``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.domain import Status
from monitor.records import Event, EventType, PlatformChange, RegistrySummary

if TYPE_CHECKING:
    from monitor.reference import ImageReference

__all__ = ["event_to_payload", "format_timestamp", "parse_timestamp", "payload_to_event"]


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and whole seconds; a naive ``moment`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-14:00 is a valid RFC 3339 time past datetime.max in UTC.
        raise ValueError(f"timestamp out of range: {text!r}") from None


def event_to_payload(event: Event, *, reference: ImageReference | None = None) -> dict[str, Any]:
    """The webhook ``json`` body of SPEC §6 for ``event``.

    ``image`` parts come from ``reference`` or, when not given, from parsing
    ``event.image``. A ``tag.restored`` body also carries ``same_digest``
    (SPEC §5: the event "says whether the digest is the one it had before"),
    a ``version.available`` body ``version: {current, available}`` (the
    watched tag and the higher version's tag, SPEC §9); a ``registry.*`` body
    carries ``registry``: its name and, of its checked watched tags, how many
    there are and how many ended in ``error``.
    """
    if reference is None:
        from monitor.reference import parse_reference

        reference = parse_reference(event.image)
    payload: dict[str, Any] = {
        "id": event.id,
        "type": str(event.type),
        "occurred_at": format_timestamp(event.occurred_at),
        "image": {
            "reference": event.image,
            "registry": reference.registry,
            "repository": reference.repository,
            "tag": reference.tag,
        },
        "previous": {
            "status": _status_text(event.previous_status),
            "digest": event.previous_digest,
        },
        "current": {
            "status": _status_text(event.current_status),
            "digest": event.current_digest,
            "checked_at": None if event.checked_at is None else format_timestamp(event.checked_at),
        },
        "platforms": {
            name: {"previous": change.previous, "current": change.current}
            for name, change in event.platforms.items()
        },
        "reason": event.reason,
    }
    if event.type is EventType.TAG_RESTORED:
        payload["same_digest"] = event.same_digest
    if event.type is EventType.VERSION_AVAILABLE:
        payload["version"] = {"current": reference.tag, "available": event.version}
    if event.registry is not None:
        payload["registry"] = {
            "name": event.registry.name,
            "tags": event.registry.tags,
            "errors": event.registry.errors,
        }
    return payload


def payload_to_event(payload: Mapping[str, Any]) -> Event:
    """The inverse of ``event_to_payload`` (timestamps come back at whole seconds).

    Raises ``ValueError`` (or ``KeyError``/``TypeError`` for a body of another
    shape) when the payload is not an event body.
    """
    previous = payload.get("previous") or {}
    current = payload.get("current") or {}
    checked_at = current.get("checked_at")
    platforms = payload.get("platforms") or {}
    registry = payload.get("registry")
    return Event(
        id=payload["id"],
        type=EventType(payload["type"]),
        occurred_at=parse_timestamp(payload["occurred_at"]),
        image=payload["image"]["reference"],
        previous_status=_parse_status(previous.get("status")),
        previous_digest=previous.get("digest"),
        current_status=_parse_status(current.get("status")),
        current_digest=current.get("digest"),
        checked_at=None if checked_at is None else parse_timestamp(checked_at),
        platforms={
            name: PlatformChange(change.get("previous"), change.get("current"))
            for name, change in platforms.items()
        },
        reason=payload.get("reason"),
        same_digest=payload.get("same_digest"),
        version=(payload.get("version") or {}).get("available"),
        registry=None
        if registry is None
        else RegistrySummary(registry["name"], registry["tags"], registry["errors"]),
    )


def _status_text(status: Status | None) -> str | None:
    return None if status is None else str(status)


def _parse_status(text: str | None) -> Status | None:
    return None if text is None else Status(text)
