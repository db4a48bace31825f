"""The formatter plugin family: one small Protocol and the text helpers they share.

A formatter turns the stored SPEC §6 event body into the JSON document one
kind of receiver expects, and a batch of them (``batch:``, SPEC §6) into one
document. It is pure (no I/O, no clock) and must not add anything that is not
in the event bodies: no URL, no secret.

``PRESENTATION`` is the one place where an event type's title, emoji, colour
and severity live; every format and the Apprise text take them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from monitor.records import EventType

__all__ = [
    "BATCH_LINES",
    "PRESENTATION",
    "Formatter",
    "Level",
    "Presentation",
    "batch_counts",
    "batch_lead",
    "clip",
    "counts_text",
    "digest_change",
    "platform_lines",
    "presentation_of",
    "reference_of",
    "short_digest",
    "status_line",
    "summary_details",
    "summary_line",
    "take_lines",
    "title_of",
    "version_change",
]

# Apprise's notify types, least to most severe (a batch takes its most severe member's).
Level = Literal["info", "success", "warning", "failure"]
_LEVELS: Final[tuple[Level, ...]] = ("info", "success", "warning", "failure")

BATCH_LINES: Final = 20  # event lines a chat message shows before "and N more"


@dataclass(frozen=True, slots=True)
class Presentation:
    """How the chat formats show one event type."""

    title: str
    emoji: str  # Slack
    colour: int  # Discord embed
    level: Level = "info"  # Apprise notify type; the colour of a batch

    @property
    def severity(self) -> int:
        return _LEVELS.index(self.level)


PRESENTATION: Final[Mapping[EventType, Presentation]] = {
    EventType.TAG_CHANGED: Presentation("Tag overwritten", ":warning:", 0xF2A900, "warning"),
    EventType.TAG_MISSING: Presentation("Tag missing", ":red_circle:", 0xE01E5A, "failure"),
    EventType.TAG_RESTORED: Presentation(
        "Tag restored", ":large_green_circle:", 0x2EB67D, "success"
    ),
    EventType.TAG_CREATED: Presentation("Tag created", ":new:", 0x3AA3E3, "info"),  # blue
    EventType.TAG_DELETED: Presentation("Tag deleted", ":wastebasket:", 0x9B59B6, "warning"),
    EventType.VERSION_AVAILABLE: Presentation(
        "Newer version", ":arrow_up:", 0x1ABC9C, "info"
    ),  # teal
    # dark red: the registry cannot tell, which is not the same as "missing"
    EventType.CHECK_FAILING: Presentation("Checks failing", ":x:", 0x992D22, "failure"),
    EventType.CHECK_RECOVERED: Presentation(
        "Checks recovered", ":white_check_mark:", 0x2EB67D, "success"
    ),
    # One notification for a registry outage: as severe as a failing check, in the same colours.
    EventType.REGISTRY_FAILING: Presentation(
        "Registry failing", ":rotating_light:", 0x992D22, "failure"
    ),
    EventType.REGISTRY_RECOVERED: Presentation(
        "Registry recovered", ":white_check_mark:", 0x2EB67D, "success"
    ),
    EventType.TEST: Presentation("Test event", ":wave:", 0x5865F2, "info"),  # blurple
}
_UNKNOWN = Presentation("Event", ":bell:", 0x99AAB5, "info")

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

    def render_batch(self, batch_id: str, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One document for several events (oldest first), within the receiver's size limits."""
        ...


def presentation_of(payload: Mapping[str, Any]) -> Presentation:
    """The event type's presentation; a type this version does not know keeps its name."""
    kind = str(payload.get("type", ""))
    try:
        return PRESENTATION[EventType(kind)]
    except ValueError:
        return Presentation(kind or _UNKNOWN.title, _UNKNOWN.emoji, _UNKNOWN.colour, "info")


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
    """What the event is about: the image, or for a ``registry.*`` event the registry."""
    registry = _part(payload, "registry")
    if registry:
        return str(registry.get("name") or "unknown registry")
    return str(_part(payload, "image").get("reference") or "unknown image")


def _registry_line(payload: Mapping[str, Any]) -> str:
    """``5 of 5 tags in error``; on recovery, how many tags the registry answered so far
    (the others are checked again at their interval)."""
    registry = _part(payload, "registry")
    tags, errors = registry.get("tags"), registry.get("errors")
    if payload.get("type") == EventType.REGISTRY_RECOVERED:
        answered = tags - errors if isinstance(tags, int) and isinstance(errors, int) else "?"
        return f"answering again, {answered} of {tags} tags answered so far"
    return f"{errors} of {tags} tags in error"


def digest_change(payload: Mapping[str, Any]) -> str | None:
    """``old → new`` (shortened) when the event is about a digest, else the one digest known."""
    if _part(payload, "registry"):
        return None  # about a registry: the digest of the check that tipped it says nothing
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
    """``present → missing`` or just the current status; ``4 of 5 tags in error`` for a
    registry."""
    if _part(payload, "registry"):
        return _registry_line(payload)
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


def version_change(payload: Mapping[str, Any]) -> str | None:
    """``1.27.2 → 1.27.3`` for a ``version.available``, else None."""
    version = payload.get("version")
    if not isinstance(version, Mapping) or not version.get("available"):
        return None
    return f"{version.get('current')} → {version.get('available')}"


def summary_details(payload: Mapping[str, Any]) -> list[str]:
    """``[digests, status …, reason …]``: what the one-line summary puts in parentheses."""
    registry = _part(payload, "registry")
    details = [_registry_line(payload) if registry else f"status {status_line(payload)}"]
    digests = digest_change(payload)
    if digests:
        details.insert(0, digests)
    version = version_change(payload)
    if version:
        details.insert(0, f"version {version}")
    reason = payload.get("reason")
    if reason:
        details.append(f"reason {reason}")
    return details


def summary_line(payload: Mapping[str, Any]) -> str:
    """``Tag overwritten: REF (old → new, status present)``: one event as one line of text."""
    shown = presentation_of(payload)
    return f"{shown.title}: {reference_of(payload)} ({', '.join(summary_details(payload))})"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def take_lines(
    lines: Sequence[str], *, max_lines: int, max_chars: int, line_chars: int
) -> tuple[list[str], int]:
    """The leading ``lines`` that fit (each clipped to ``line_chars``, joined by newlines in
    ``max_chars``, at most ``max_lines``), and how many did not."""
    kept: list[str] = []
    used = 0
    for line in lines:
        line = clip(line, line_chars)
        cost = len(line) + (1 if kept else 0)
        if len(kept) == max_lines or used + cost > max_chars:
            break
        kept.append(line)
        used += cost
    return kept, len(lines) - len(kept)


def batch_counts(payloads: Sequence[Mapping[str, Any]]) -> list[tuple[Presentation, int]]:
    """How many events of each type, in ``EventType`` order; types this version does not
    know follow, in order of first appearance."""
    counts: dict[str, int] = {}
    for payload in payloads:
        kind = str(payload.get("type", ""))
        counts[kind] = counts.get(kind, 0) + 1
    order = {str(kind): index for index, kind in enumerate(EventType)}
    ranked = sorted(counts, key=lambda kind: order.get(kind, len(order)))
    return [(presentation_of({"type": kind}), counts[kind]) for kind in ranked]


def counts_text(payloads: Sequence[Mapping[str, Any]]) -> str:
    """``Checks failing: 3 · Checks recovered: 2``."""
    return " · ".join(f"{shown.title}: {count}" for shown, count in batch_counts(payloads))


def batch_lead(payloads: Sequence[Mapping[str, Any]]) -> Presentation:
    """The presentation of the batch's most severe event (the earliest of equals)."""
    shown = [presentation_of(payload) for payload in payloads] or [_UNKNOWN]
    return max(shown, key=lambda item: item.severity)
