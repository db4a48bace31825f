"""Webhook payloads, signing, formats and the sender's classification of answers."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from support.faults import free_port, hung_server, status_server

from monitor.domain import Status
from monitor.notify import FORMATTERS, DeliveryError, SigningError, build_request, render_body
from monitor.notify.dispatcher import backoff_delay
from monitor.notify.formats import formatter_for
from monitor.notify.formats.base import PRESENTATION
from monitor.notify.payload import USER_AGENT
from monitor.notify.sender import parse_retry_after, send
from monitor.records import Event, EventType
from monitor.registry.transport import default_transport_factory
from monitor.wire import event_to_payload

SECRET = "whsec_" + base64.b64encode(b"regmon-test-secret-0123456789").decode()
OLD = "sha256:" + "a1" * 32
NEW = "sha256:" + "b2" * 32
NOW = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
REF = "registry.example.com:5000/team/app:prod"


def payload(kind: EventType = EventType.TAG_CHANGED, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "01JD9Z6K3M2Y8T0QX4V5R7N1AB",
        "type": kind,
        "occurred_at": NOW,
        "image": REF,
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.PRESENT,
        "current_digest": NEW,
        "checked_at": NOW,
    }
    fields.update(overrides)
    return event_to_payload(Event(**fields))


def test_a_signed_delivery_verifies_with_standardwebhooks() -> None:
    body = payload()
    wire = build_request(body, format="json", secret=SECRET, timestamp=datetime.now(UTC))
    assert wire.headers["content-type"] == "application/json"
    assert wire.headers["user-agent"] == USER_AGENT
    assert wire.headers["webhook-id"] == body["id"]
    assert wire.headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(wire.body, wire.headers) == body


def test_the_id_is_stable_across_attempts_and_each_attempt_is_signed_afresh() -> None:
    body = payload()
    first = build_request(body, format="json", secret=SECRET, timestamp=datetime.now(UTC))
    later = build_request(
        body, format="json", secret=SECRET, timestamp=datetime.now(UTC) + timedelta(seconds=90)
    )
    assert first.headers["webhook-id"] == later.headers["webhook-id"] == body["id"]
    assert first.body == later.body
    assert first.headers["webhook-timestamp"] != later.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != later.headers["webhook-signature"]
    Webhook(SECRET).verify(first.body, first.headers)
    Webhook(SECRET).verify(later.body, later.headers)


def test_a_tampered_body_does_not_verify() -> None:
    wire = build_request(payload(), format="json", secret=SECRET, timestamp=datetime.now(UTC))
    with pytest.raises(WebhookVerificationError, match=r"^No matching signature found$"):
        Webhook(SECRET).verify(wire.body.replace(b"b2b2", b"c3c3", 1), wire.headers)


def test_without_a_secret_the_delivery_is_unsigned_but_identified() -> None:
    wire = build_request(payload(), format="json", secret=None, timestamp=NOW)
    assert "webhook-signature" not in wire.headers
    assert wire.headers["webhook-id"] == payload()["id"]
    assert wire.headers["webhook-timestamp"] == str(int(NOW.timestamp()))


def test_configured_headers_are_sent() -> None:
    wire = build_request(
        payload(),
        format="json",
        secret=SECRET,
        timestamp=NOW,
        extra_headers={"X-Team": "ops", "User-Agent": "custom/1"},
    )
    assert wire.headers["x-team"] == "ops"
    assert wire.headers["user-agent"] == "custom/1"


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!!", "x"])
def test_an_unusable_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(SigningError) as info:
        build_request(payload(), format="json", secret=secret, timestamp=NOW)
    assert secret not in str(info.value).replace("whsec_ followed", "")


def test_json_format_is_the_stored_event_body() -> None:
    body = payload()
    assert json.loads(render_body(body, "json")) == body


def test_every_configurable_format_has_a_formatter() -> None:
    from typing import get_args

    from monitor.config import WebhookConfig

    configurable = set(get_args(WebhookConfig.model_fields["format"].annotation))
    assert configurable == set(FORMATTERS)
    with pytest.raises(KeyError, match="known: json, slack, discord"):
        formatter_for("teams")


# --------------------------------------------------------------------------- retry timing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("-5", None),
        ("99999999", 3600.0),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after(earlier, now) == 0.0


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    rng = random.Random(7)
    for attempts in range(40):
        ceiling = min(600.0, 0.5 * 2**attempts)
        delays = [backoff_delay(attempts, rng=rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
    assert max(backoff_delay(30, rng=rng) for _ in range(200)) > 300  # reaches toward the cap


# --------------------------------------------------------------------------- the sender

PATH_SECRET = "T0SECRETPATHTOKEN"
URL_PASSWORD = "urlpassw0rd"


def _url(host: str) -> str:
    return f"http://hook:{URL_PASSWORD}@{host}/services/{PATH_SECRET}"


def _redacted(host: str) -> str:
    return f"http://***@{host}/***"


async def _send(url: str, host: str, timeout: float = 2.0) -> httpx.Response | DeliveryError:
    # The transport the service uses (httpx-aiohttp), URL credentials and all.
    async with httpx.AsyncClient(transport=default_transport_factory(True)) as http:
        try:
            answer = await send(
                http, url, b"{}", {}, timeout_seconds=timeout, redacted_url=_redacted(host)
            )
        except DeliveryError as exc:
            return exc
        return httpx.Response(answer.status_code, text=answer.text)


def _assert_clean(exc: DeliveryError) -> None:
    text = str(exc) + repr(exc.__cause__) + repr(exc.__context__)
    assert PATH_SECRET not in text and URL_PASSWORD not in text


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [
        (500, {}, False, None),
        (502, {}, False, None),
        (503, {"Retry-After": "7"}, False, 7.0),
        (408, {}, False, None),
        (429, {"Retry-After": "2"}, False, 2.0),
        (429, {}, False, None),
        (301, {"Location": "http://elsewhere.example/"}, False, None),
        (400, {}, True, None),
        (401, {}, True, None),
        (404, {}, True, None),
        (410, {}, True, None),
        (422, {}, True, None),
    ],
)
def test_sender_classifies_answers(
    status: int, headers: dict[str, str], permanent: bool, retry_after: float | None
) -> None:
    echo = f"Cannot POST /services/{PATH_SECRET}".encode()
    with status_server(status, headers, echo) as server:
        host = server.host
        outcome = asyncio.run(_send(_url(host), host))
    assert isinstance(outcome, DeliveryError)
    assert outcome.permanent is permanent
    assert outcome.retry_after == retry_after
    assert outcome.status_code == status
    assert f"HTTP {status} from {_redacted(host)}" in str(outcome)
    _assert_clean(outcome)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_sender_delivers_on_2xx(status: int) -> None:
    with status_server(status) as server:
        outcome = asyncio.run(_send(_url(server.host), server.host))
        request = server.requests[0]
    assert isinstance(outcome, httpx.Response) and outcome.status_code == status
    # URL credentials go as Basic auth (and never as part of the request target).
    assert request.headers["authorization"].startswith("Basic ")
    assert request.method == "POST" and request.path == f"/services/{PATH_SECRET}"


def test_sender_retries_a_refused_connection() -> None:
    host = f"127.0.0.1:{free_port()}"
    outcome = asyncio.run(_send(_url(host), host))
    assert isinstance(outcome, DeliveryError)
    assert not outcome.permanent and outcome.status_code is None
    assert str(outcome).startswith("unreachable")
    _assert_clean(outcome)


def test_sender_times_out_a_receiver_that_never_answers() -> None:
    with hung_server() as server:
        began = time.monotonic()
        outcome = asyncio.run(_send(_url(server.host), server.host, timeout=0.5))
        took = time.monotonic() - began
    assert isinstance(outcome, DeliveryError)
    assert not outcome.permanent and str(outcome).startswith("timeout")
    assert took < 3
    _assert_clean(outcome)


def test_retry_after_with_non_ascii_digits_is_ignored_not_a_crash() -> None:
    from monitor.notify.sender import parse_retry_after

    assert parse_retry_after("\u00b2") is None
    assert parse_retry_after("2") == 2


def test_every_event_type_has_one_presentation() -> None:
    assert set(PRESENTATION) == set(EventType)
    assert len({p.title for p in PRESENTATION.values()}) == len(PRESENTATION)
