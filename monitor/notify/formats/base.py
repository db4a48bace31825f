"""The formatter plugin family: one small Protocol and the text helpers they share.

A formatter turns the stored SPEC §6 event body into the JSON document one
kind of receiver expects. It is pure (no I/O, no clock) and must not add
anything that is not in the event body: no URL, no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from monitor.domain import EventType

__all__ = [
    "PRESENTATION",
    "Formatter",
    "Presentation",
    "digest_change",
    "platform_lines",
    "presentation_of",
    "reference_of",
    "short_digest",
    "status_line",
    "title_of",
]


@dataclass(frozen=True, slots=True)
class Presentation:
    """How the chat formats show one event type."""

    title: str
    emoji: str  # Slack
    colour: int  # Discord embed


PRESENTATION: Final[Mapping[EventType, Presentation]] = {
    EventType.TAG_CHANGED: Presentation("Tag overwritten", ":warning:", 0xF2A900),  # amber
    EventType.TAG_MISSING: Presentation("Tag missing", ":red_circle:", 0xE01E5A),  # red
    EventType.TAG_RESTORED: Presentation("Tag restored", ":large_green_circle:", 0x2EB67D),
    EventType.TAG_CREATED: Presentation("Tag created", ":new:", 0x3AA3E3),  # blue
    EventType.CHECK_FAILING: Presentation("Checks failing", ":x:", 0x992D22),  # cannot tell
    EventType.CHECK_RECOVERED: Presentation("Checks recovered", ":white_check_mark:", 0x2EB67D),
    EventType.TEST: Presentation("Test event", ":wave:", 0x5865F2),  # blurple
}
_UNKNOWN = Presentation("Event", ":bell:", 0x99AAB5)

_SHORT_HEX: Final = 12


class Formatter(Protocol):
    """Renders an event body (SPEC §6) for one kind of receiver."""

    @property
    def name(self) -> str:
        """The ``format:`` value in a webhook's config."""
        ...

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON document to POST; must be JSON-serializable."""
        ...


def presentation_of(payload: Mapping[str, Any]) -> Presentation:
    """The event type's presentation; a type this version does not know keeps its name."""
    kind = str(payload.get("type", ""))
    try:
        return PRESENTATION[EventType(kind)]
    except ValueError:
        return Presentation(kind or _UNKNOWN.title, _UNKNOWN.emoji, _UNKNOWN.colour)


def title_of(payload: Mapping[str, Any]) -> str:
    return presentation_of(payload).title


def short_digest(digest: object) -> str:
    """``sha256:0123456789ab``: the algorithm and the first 12 hex digits, as docker prints."""
    if not isinstance(digest, str) or not digest:
        return "none"
    algorithm, colon, hexpart = digest.partition(":")
    if not colon:
        return digest[:_SHORT_HEX]
    return f"{algorithm}:{hexpart[:_SHORT_HEX]}"


def _part(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, Mapping) else {}


def reference_of(payload: Mapping[str, Any]) -> str:
    return str(_part(payload, "image").get("reference") or "unknown image")


def digest_change(payload: Mapping[str, Any]) -> str | None:
    """``old → new`` (shortened) when the event is about a digest, else the one digest known."""
    old = _part(payload, "previous").get("digest")
    new = _part(payload, "current").get("digest")
    if old and new and old != new:
        return f"{short_digest(old)} → {short_digest(new)}"
    if new:
        return short_digest(new)
    if old:
        return f"{short_digest(old)} → none"
    return None


def status_line(payload: Mapping[str, Any]) -> str:
    """``present → missing`` or just the current status."""
    old = _part(payload, "previous").get("status")
    new = _part(payload, "current").get("status")
    if old and new and old != new:
        return f"{old} → {new}"
    return str(new or old or "unknown")


def platform_lines(payload: Mapping[str, Any]) -> list[str]:
    platforms = payload.get("platforms")
    if not isinstance(platforms, Mapping):
        return []
    lines = []
    for name, change in sorted(platforms.items()):
        if isinstance(change, Mapping):
            old, new = change.get("previous"), change.get("current")
            lines.append(f"{name}: {short_digest(old)} → {short_digest(new)}")
    return lines
