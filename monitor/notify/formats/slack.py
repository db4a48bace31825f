"""``format: slack``: a Slack incoming-webhook message (``text`` fallback plus Block Kit).

A batch is one message: a section with the counts per event type, sections
with one line per event (at most ``BATCH_LINES``, each section under Slack's
3,000-character limit for a text object), "and N more" when lines were left
out, and a context footer: well inside the 50 blocks a message may have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from monitor.notify.formats.base import (
    BATCH_LINES,
    batch_counts,
    counts_text,
    digest_change,
    platform_lines,
    presentation_of,
    reference_of,
    status_line,
    summary_details,
    take_lines,
    version_change,
)

__all__ = ["SlackFormatter"]

_SECTION_CHARS: Final = 2900  # Slack refuses a section text over 3,000 characters
_LINE_CHARS: Final = 300
_LINES_PER_SECTION: Final = 8  # 8 lines of 301 < _SECTION_CHARS


def _code(text: str) -> str:
    # Backticks would end the code span early; references and digests never hold one.
    return f"`{text.replace('`', '')}`"


def _escape(text: str) -> str:
    # Slack's mrkdwn reserves these three (https://api.slack.com/reference/surfaces/formatting).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _batch_line(payload: Mapping[str, Any]) -> str:
    shown = presentation_of(payload)
    details = _escape(", ".join(summary_details(payload)))
    return f"{shown.emoji} *{shown.title}*: {_code(reference_of(payload))} ({details})"


class SlackFormatter:
    name = "slack"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        shown = presentation_of(payload)
        reference = reference_of(payload)
        title = shown.title
        emoji = shown.emoji
        digests = digest_change(payload)
        status = status_line(payload)
        reason = payload.get("reason")

        text = f"{emoji} {title}: {reference} ({', '.join(summary_details(payload))})"

        fields: list[dict[str, str]] = [{"type": "mrkdwn", "text": f"*Status*\n{status}"}]
        if digests:
            fields.insert(0, {"type": "mrkdwn", "text": f"*Digest*\n{_code(digests)}"})
        version = version_change(payload)
        if version:
            fields.insert(0, {"type": "mrkdwn", "text": f"*Version*\n{_code(version)}"})
        if reason:
            fields.append({"type": "mrkdwn", "text": f"*Reason*\n{reason}"})
        blocks: list[dict[str, Any]] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{emoji} *{title}*\n{_code(reference)}"},
            },
            {"type": "section", "fields": fields},
        ]
        platforms = platform_lines(payload)
        if platforms:
            blocks.append(
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "*Platforms*\n" + "\n".join(_code(line) for line in platforms),
                    },
                }
            )
        footer = f"regmon · {payload.get('occurred_at', '')} · {payload.get('id', '')}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
        return {"text": text, "blocks": blocks}

    def render_batch(self, batch_id: str, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        total = len(payloads)
        counts = "\n".join(
            f"{shown.emoji} {shown.title}: {count}" for shown, count in batch_counts(payloads)
        )
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{total} events*\n{counts}"}}
        ]
        lines, more = take_lines(
            [_batch_line(payload) for payload in payloads],
            max_lines=BATCH_LINES,
            max_chars=BATCH_LINES * (_LINE_CHARS + 1),
            line_chars=_LINE_CHARS,
        )
        for start in range(0, len(lines), _LINES_PER_SECTION):
            chunk = "\n".join(lines[start : start + _LINES_PER_SECTION])
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
        footer = f"regmon · {batch_id}"
        if more:
            footer = f"and {more} more · {footer}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
        return {"text": f"{total} events: {counts_text(payloads)}", "blocks": blocks}
