"""Event ids: ULIDs, monotonic within the process.

A ULID is 128 bits written as 26 Crockford base32 characters: a 48-bit Unix
timestamp in milliseconds followed by 80 random bits. Ids made in the same
millisecond increment the previous id instead of drawing new random bits, so
ids sort (as strings and as integers) in the order they were made, which is
what ``GET /api/v1/events?since=<id>`` and per-tag delivery order rely on.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["is_event_id", "new_event_id", "ulid_timestamp"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {char: value for value, char in enumerate(_ALPHABET)}
_LENGTH = 26
_RANDOM_BITS = 80
_MAX_VALUE = (1 << 128) - 1
_MAX_TIMESTAMP_MS = (1 << 48) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _MonotonicState:
    """The last id issued, guarded by a lock (ids are made from several threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0


_STATE = _MonotonicState()


def _encode(value: int) -> str:
    chars = []
    for _ in range(_LENGTH):
        chars.append(_ALPHABET[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    value = 0
    for char in text.upper():
        value = (value << 5) | _DECODE[char]
    return value


def _to_ms(now: datetime) -> int:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // timedelta(milliseconds=1)


def new_event_id(now: datetime | None = None) -> str:
    """Return a new ULID for ``now`` (default: the system clock).

    Monotonic within the process: an id made in the same millisecond as the
    previous one (or while the system clock stands behind it) is the previous
    id plus one. An explicit ``now`` earlier than the last id issued gets a
    fresh id with exactly that timestamp and leaves the sequence alone: it
    cannot sort after ids already issued without misstating its time. A naive
    ``now`` is taken as UTC.
    """
    ms = time.time_ns() // 1_000_000 if now is None else _to_ms(now)
    if not 0 <= ms <= _MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp out of ULID range: {now!r}")
    fresh = (ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    with _STATE.lock:
        last_ms = _STATE.last >> _RANDOM_BITS
        if ms > last_ms:
            value = fresh
        elif ms == last_ms or now is None:
            # Same millisecond, or the clock stepped back: continue the sequence.
            # Overflowing the 80 random bits carries into the timestamp, which
            # keeps the order (2**80 ids in one millisecond will not happen).
            value = _STATE.last + 1
            if value > _MAX_VALUE:
                raise OverflowError("ULID space exhausted")
        else:
            return _encode(fresh)
        _STATE.last = value
    return _encode(value)


def is_event_id(text: str) -> bool:
    """True when ``text`` is a ULID (26 Crockford base32 characters, any case)."""
    return (
        len(text) == _LENGTH
        and text.isascii()
        and text[0] in "01234567"
        and all(char in _DECODE for char in text.upper())
    )


def ulid_timestamp(event_id: str) -> datetime:
    """The creation time (UTC, millisecond precision) encoded in a ULID."""
    if not is_event_id(event_id):
        raise ValueError(f"not an event id: {event_id!r}")
    ms = _decode(event_id) >> _RANDOM_BITS
    return _EPOCH + timedelta(milliseconds=ms)
