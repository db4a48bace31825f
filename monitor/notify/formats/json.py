"""``format: json``: the SPEC §6 event body, unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JsonFormatter"]


class JsonFormatter:
    name = "json"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return dict(payload)
