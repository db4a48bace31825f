"""HTTP header values read the same way by every client in regmon."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after"]

# Longer than any real back-off; a larger value is a misconfigured peer. A monitor
# that honoured a day would stop checking a registry for a day after one bad header;
# a receiver still asking after an hour is asked again then.
MAX_RETRY_AFTER: Final = 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, at most ``MAX_RETRY_AFTER``.

    RFC 9110 §10.2.3: ``delay-seconds`` (ASCII digits only: not ``-3``, ``1.5``
    or ``²``) or an HTTP date (a past date is 0). None when the value is neither:
    the caller decides its own default.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
