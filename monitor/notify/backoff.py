"""Retry spacing: exponential backoff with full jitter."""

from __future__ import annotations

import random
from typing import Final

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "backoff_delay"]

BACKOFF_BASE: Final = 0.5  # seconds; doubled per attempt
BACKOFF_CAP: Final = 600.0


def backoff_delay(
    attempts: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry number ``attempts + 1``: full jitter over ``min(cap, base*2**n)``."""
    ceiling = min(cap, base * 2.0 ** min(attempts, 62))
    return (rng or random).uniform(0.0, ceiling)
