"""``format: discord``: a Discord webhook message (``content`` plus one embed, coloured by type)."""

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

__all__ = ["COLOURS", "DiscordFormatter"]

COLOURS: Final[Mapping[str, int]] = {
    "tag.changed": 0xF2A900,  # amber: someone overwrote a tag
    "tag.missing": 0xE01E5A,  # red
    "tag.restored": 0x2EB67D,  # green
    "check.failing": 0x992D22,  # dark red: we cannot tell
    "check.recovered": 0x2EB67D,
    "test": 0x5865F2,  # blurple
}
_DEFAULT_COLOUR: Final = 0x99AAB5


class DiscordFormatter:
    name = "discord"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        kind = str(payload.get("type", ""))
        reference = reference_of(payload)
        title = title_of(payload)
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
            "color": COLOURS.get(kind, _DEFAULT_COLOUR),
            "fields": fields,
            "footer": {"text": f"regmon · {payload.get('id', '')}"},
        }
        occurred = payload.get("occurred_at")
        if occurred:
            embed["timestamp"] = occurred
        content = f"**{title}**: `{reference}`" + (f" ({digests})" if digests else "")
        # Discord would ping @everyone from an image name; allow no mentions at all.
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}
