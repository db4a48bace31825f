"""``format: discord``: a Discord webhook message (``content`` plus one embed, coloured by type)."""

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

__all__ = ["DiscordFormatter"]



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
        content = f"**{title}**: `{reference}`" + (f" ({digests})" if digests else "")
        # Discord would ping @everyone from an image name; allow no mentions at all.
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}
