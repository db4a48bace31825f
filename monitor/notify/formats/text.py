"""Plain-text messages (title and body) for channels that take text: the Apprise services.

One event: the title names what happened to which image, the body is its
one-line summary (and the platforms that changed). A batch: the title counts
the events, the body gives the counts per event type, then one line per
event (at most ``TEXT_LINES``, then "and N more"). The level (Apprise's
notify type) is the most severe event's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from monitor.notify.formats.base import (
    Level,
    batch_counts,
    batch_lead,
    counts_text,
    platform_lines,
    presentation_of,
    reference_of,
    summary_line,
    take_lines,
)

__all__ = ["TEXT_LINES", "TextMessage", "text_message"]

TEXT_LINES: Final = 100  # e-mail takes more than chat; an SMS gateway truncates on its own
_LINE_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class TextMessage:
    title: str
    body: str
    level: Level


def text_message(payloads: Sequence[Mapping[str, Any]]) -> TextMessage:
    """The message for one event (one payload) or a batch (several, oldest first)."""
    if not payloads:
        raise ValueError("a message needs at least one event")
    if len(payloads) == 1:
        payload = payloads[0]
        shown = presentation_of(payload)
        lines = [summary_line(payload), *platform_lines(payload)]
        return TextMessage(
            f"regmon: {shown.title}: {reference_of(payload)}", "\n".join(lines), shown.level
        )
    total = len(payloads)
    counts = [f"{shown.title}: {count}" for shown, count in batch_counts(payloads)]
    lines, more = take_lines(
        [summary_line(payload) for payload in payloads],
        max_lines=TEXT_LINES,
        max_chars=TEXT_LINES * (_LINE_CHARS + 1),
        line_chars=_LINE_CHARS,
    )
    if more:
        lines.append(f"and {more} more")
    body = "\n".join([*counts, "", *lines])
    return TextMessage(
        f"regmon: {total} events: {counts_text(payloads)}", body, batch_lead(payloads).level
    )
