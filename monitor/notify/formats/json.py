"""``format: json``: the SPEC §6 event body, unchanged; a batch is
``{"type": "batch", "id": …, "events": [event bodies, oldest first]}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["JsonFormatter"]


class JsonFormatter:
    name = "json"

    def render(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return dict(payload)

    def render_batch(self, batch_id: str, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        # No size cap: the receiver is a program, and dropping events from it would lose them.
        return {"type": "batch", "id": batch_id, "events": [dict(p) for p in payloads]}
