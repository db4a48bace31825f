"""One Retry-After reading for the registry client and the webhook sender."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from monitor.headers import MAX_RETRY_AFTER, parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("2", 2.0),
        (" 120 ", 120.0),
        ("3600", 3600.0),
        ("86400", MAX_RETRY_AFTER),
        ("99999999", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-3", None),  # the registry's old parser waited 0 s
        ("+3", None),
        ("1.5", None),  # ... and 1.5 s
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("\u00b2", None),  # superscript two: str.isdigit() is true
        ("\u0663", None),  # Arabic-Indic three: float() reads it as 3.0
        ("1 2", None),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        (format_datetime(NOW + timedelta(days=3), usegmt=True), MAX_RETRY_AFTER),
        ("Thu, 01 Jan 2026 12:01:00 +0000", 60.0),
        ("Thursday, 01-Jan-26 12:00:10 GMT", 10.0),  # RFC 850, obsolete but allowed
        ("Thu Jan  1 12:00:05 2026", 5.0),  # asctime: no zone is UTC
        ("Thu, 32 Jan 2026 12:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_registry_client_and_webhook_sender_share_it() -> None:
    from monitor.notify import sender
    from monitor.registry import session

    assert session.parse_retry_after is parse_retry_after
    assert sender.parse_retry_after is parse_retry_after
