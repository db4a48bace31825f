"""Webhook body formats: a registry of ``Formatter`` plugins by ``format:`` name.

Adding a format is one file with a class that has ``name``, ``render`` and ``render_batch``,
one line in ``FORMATTERS`` below, and its name in ``WebhookConfig.format``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from monitor.notify.formats.base import Formatter, short_digest
from monitor.notify.formats.discord import DiscordFormatter
from monitor.notify.formats.json import JsonFormatter
from monitor.notify.formats.slack import SlackFormatter

__all__ = ["FORMATTERS", "Formatter", "formatter_for", "short_digest"]

FORMATTERS: Final[Mapping[str, Formatter]] = MappingProxyType(
    {f.name: f for f in (JsonFormatter(), SlackFormatter(), DiscordFormatter())}
)


def formatter_for(name: str) -> Formatter:
    """The formatter for a webhook's ``format:``; ``KeyError`` naming the choices if unknown."""
    try:
        return FORMATTERS[name]
    except KeyError:
        raise KeyError(
            f"unknown webhook format {name!r} (known: {', '.join(FORMATTERS)})"
        ) from None
