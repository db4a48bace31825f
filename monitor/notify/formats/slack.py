"""``format: slack``: a Slack incoming-webhook message (``text`` fallback plus Block Kit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.notify.formats.base import (
    digest_change,
    platform_lines,
    presentation_of,
    reference_of,
    status_line,
)

__all__ = ["SlackFormatter"]



def _code(text: str) -> str:
    # Backticks would end the code span early; references and digests never hold one.
    return f"`{text.replace('`', '')}`"


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

        summary = f"{emoji} {title}: {reference}"
        details = [f"status {status}"]
        if digests:
            details.insert(0, digests)
        if reason:
            details.append(f"reason {reason}")
        text = f"{summary} ({', '.join(details)})"

        fields: list[dict[str, str]] = [{"type": "mrkdwn", "text": f"*Status*\n{status}"}]
        if digests:
            fields.insert(0, {"type": "mrkdwn", "text": f"*Digest*\n{_code(digests)}"})
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
