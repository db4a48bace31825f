from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.ids import is_event_id, new_event_id, ulid_timestamp

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_shape() -> None:
    event_id = new_event_id()
    assert len(event_id) == 26
    assert set(event_id) <= CROCKFORD
    assert is_event_id(event_id)


def test_monotonic_in_a_tight_loop() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_monotonic_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_event_id() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [event_id for out in results for event_id in out]
    assert len(set(every)) == len(every)
    for out in results:
        assert out == sorted(out)


def test_same_millisecond_increments() -> None:
    now = datetime.now(UTC) + timedelta(days=1)  # ahead of every id issued so far
    first = new_event_id(now)
    second = new_event_id(now)
    assert second > first
    assert second[:10] == first[:10]  # same 48-bit timestamp


def test_timestamp_round_trip() -> None:
    now = datetime(2026, 11, 27, 5, 40, 20, 123_000, tzinfo=UTC)
    assert ulid_timestamp(new_event_id(now)) == now


def test_timestamp_round_trip_other_zone_and_naive() -> None:
    moment = datetime(2026, 11, 27, 6, 40, 20, 5_000, tzinfo=timezone(timedelta(hours=1)))
    assert ulid_timestamp(new_event_id(moment)) == moment
    naive = datetime(2026, 11, 27, 5, 40, 20)
    assert ulid_timestamp(new_event_id(naive)) == naive.replace(tzinfo=UTC)


def test_default_clock_timestamp() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    stamp = ulid_timestamp(new_event_id())
    # The sequence may run ahead of the clock if an earlier test used a future `now`.
    assert stamp >= before


def test_past_now_does_not_disturb_sequence() -> None:
    latest = new_event_id()
    past = new_event_id(datetime(2020, 1, 1, tzinfo=UTC))
    assert past < latest
    assert new_event_id() > latest


def test_sorts_by_time() -> None:
    early = new_event_id(datetime(2030, 1, 1, tzinfo=UTC))
    late = new_event_id(datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert early < late


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01JD9Z6K3M2Y8T0QX4V5R7N1AB", True),
        ("01jd9z6k3m2y8t0qx4v5r7n1ab", True),
        ("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", True),
        ("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", False),  # more than 128 bits
        ("01JD9Z6K3M2Y8T0QX4V5R7N1A", False),  # 25 characters
        ("01JD9Z6K3M2Y8T0QX4V5R7N1ABC", False),
        ("01JD9Z6K3M2Y8T0QX4V5R7N1AU", False),  # U is not Crockford
        ("01JD9Z6K3M2Y8T0QX4V5R7N1Aß", False),
        ("2026-11-27T05:40:20Z", False),
        ("", False),
    ],
)
def test_is_event_id(text: str, expected: bool) -> None:
    assert is_event_id(text) is expected


def test_ulid_timestamp_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an event id"):
        ulid_timestamp("2026-11-27T05:40:20Z")


def test_ulid_timestamp_known_value() -> None:
    # 48-bit timestamp 0x0000_0000_0001 ms → "0000000001" + 16 random chars.
    assert ulid_timestamp("0000000001" + "0" * 16) == datetime(
        1970, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC
    )
