"""``format: discord``: a Discord webhook message (``content`` plus one embed, coloured by type).

A batch is one message: ``content`` with the counts, one embed coloured by
its most severe event, a field per event type with its count, and a
description with one line per event (at most ``BATCH_LINES``, "and N more"
after them). Discord's embed limits (description 4,096 characters, 25
fields, 6,000 characters in all) are kept by construction: at most
``_DESCRIPTION_CHARS`` of lines, one field per event type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from monitor.notify.formats.base import (
    BATCH_LINES,
    batch_counts,
    batch_lead,
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

__all__ = ["DiscordFormatter"]

_DESCRIPTION_CHARS: Final = 4000
_LINE_CHARS: Final = 190  # 20 lines of 190 fit the description with "and N more"
_CONTENT_CHARS: Final = 2000


def _batch_line(payload: Mapping[str, Any]) -> str:
    reference = reference_of(payload).replace("`", "")
    details = ", ".join(summary_details(payload))
    return f"**{presentation_of(payload).title}**: `{reference}` ({details})"


class DiscordFormatter:
    name = "discord"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        shown = presentation_of(payload)
        reference = reference_of(payload)
        title = shown.title
        digests = digest_change(payload)
        status = status_line(payload)
        reason = payload.get("reason")

        fields: list[dict[str, Any]] = []
        version = version_change(payload)
        if version:
            fields.append({"name": "Version", "value": f"`{version}`", "inline": False})
        if digests:
            fields.append({"name": "Digest", "value": f"`{digests}`", "inline": False})
        fields.append({"name": "Status", "value": status, "inline": True})
        if reason:
            fields.append({"name": "Reason", "value": str(reason), "inline": True})
        platforms = platform_lines(payload)
        if platforms:
            fields.append({"name": "Platforms", "value": "\n".join(platforms), "inline": False})
        embed: dict[str, Any] = {
            "title": title,
            "description": f"`{reference}`",
            "color": shown.colour,
            "fields": fields,
            "footer": {"text": f"regmon · {payload.get('id', '')}"},
        }
        occurred = payload.get("occurred_at")
        if occurred:
            embed["timestamp"] = occurred
        aside = version or digests
        content = f"**{title}**: `{reference}`" + (f" ({aside})" if aside else "")
        # Discord would ping @everyone from an image name; allow no mentions at all.
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}

    def render_batch(self, batch_id: str, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        total = len(payloads)
        lines, more = take_lines(
            [_batch_line(payload) for payload in payloads],
            max_lines=BATCH_LINES,
            max_chars=_DESCRIPTION_CHARS,
            line_chars=_LINE_CHARS,
        )
        if more:
            lines.append(f"and {more} more")
        fields = [
            {"name": shown.title, "value": str(count), "inline": True}
            for shown, count in batch_counts(payloads)
        ]
        embed: dict[str, Any] = {
            "title": f"{total} events",
            "description": "\n".join(lines),
            "color": batch_lead(payloads).colour,
            "fields": fields[:25],
            "footer": {"text": f"regmon · {batch_id}"},
        }
        occurred = payloads[-1].get("occurred_at") if payloads else None
        if occurred:
            embed["timestamp"] = occurred
        content = f"**{total} events**: {counts_text(payloads)}"[:_CONTENT_CHARS]
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}
