"""Human durations: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``90d`` <-> seconds.

The syntax is Prometheus's (units ``ms s m h d w``, largest first, each at most
once), minus ``y`` (a year is not a fixed length), plus decimals (``1.5h``) and
a bare number meaning seconds (``30`` or ``"30"``). Negative durations are
rejected. Errors are ``ValueError`` with a one-line message; callers translate
them (the config loader into ``ConfigError``, the CLI into a usage error).
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_HINT", "format_duration", "parse_duration"]

DURATION_HINT = "a duration like 30s, 5m, 1h"

_UNITS: dict[str, float] = {
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_ORDER = ("w", "d", "h", "m", "s", "ms")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: str | int | float) -> float:
    """Return ``value`` in seconds.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration(30)
    30.0
    """
    if isinstance(value, bool):  # YAML `yes`/`no` is not a duration
        raise ValueError(_invalid(value))
    if isinstance(value, int | float):
        if value != value or value < 0:  # NaN, negative
            raise ValueError(_invalid(value))
        return _finite(float(value) if isinstance(value, float) else _int_seconds(value), value)
    if not isinstance(value, str):
        raise ValueError(_invalid(value))
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _finite(float(text), value)
    total = 0.0
    position = 0
    last_rank = -1
    for match in _PART.finditer(text):
        rank = _ORDER.index(match.group(2))
        if match.start() != position or rank <= last_rank:
            raise ValueError(_invalid(value))
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
        last_rank = rank
    if position == 0 or position != len(text):
        raise ValueError(_invalid(value))
    return _finite(total, value)


def _int_seconds(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # more than ~1e308: an int YAML read from 309+ digits
        return math.inf


def _finite(seconds: float, value: object) -> float:
    # "1" and 400 zeros reads as inf: no caller can use it, and bounds compare badly.
    if not math.isfinite(seconds):
        raise ValueError(_invalid(value))
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest form of ``seconds`` that :func:`parse_duration` reads back.

    Rounded to the millisecond; weeks are written as days (``90d``, not ``12w6d``).

    >>> format_duration(5400)
    '1h30m'
    >>> format_duration(0.25)
    '250ms'
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative number of seconds (got {seconds!r})")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def _invalid(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or value < 10**60 else "a huge number"
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"expected {DURATION_HINT} (got {shown})"
