"""``format: slack``: a Slack incoming-webhook message (``text`` fallback plus Block Kit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from monitor.notify.formats.base import (
    digest_change,
    platform_lines,
    reference_of,
    status_line,
    title_of,
)

__all__ = ["SlackFormatter"]

_EMOJI: Final[Mapping[str, str]] = {
    "tag.changed": ":warning:",
    "tag.missing": ":red_circle:",
    "tag.restored": ":large_green_circle:",
    "check.failing": ":x:",
    "check.recovered": ":white_check_mark:",
    "test": ":wave:",
}


def _code(text: str) -> str:
    # Backticks would end the code span early; references and digests never hold one.
    return f"`{text.replace('`', '')}`"


class SlackFormatter:
    name = "slack"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        kind = str(payload.get("type", ""))
        reference = reference_of(payload)
        title = title_of(payload)
        emoji = _EMOJI.get(kind, ":bell:")
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
