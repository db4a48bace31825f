"""Batches (``batch:``, SPEC §6): one delivery for several events, in each format.

Golden documents for a mixed batch per format; the limits Slack and Discord
put on one message; the batch id; the plain-text message Apprise channels get.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from monitor.domain import Status
from monitor.notify.formats import FORMATTERS, formatter_for
from monitor.notify.formats.text import TEXT_LINES, text_message
from monitor.notify.notifier import Delivery, batch_id
from monitor.notify.payload import build_delivery_request, build_request, render_batch_body
from monitor.records import Event, EventType, PlatformChange
from monitor.wire import event_to_payload

SECRET = "whsec_QmF0Y2gtc2VjcmV0LWZvci1yZWdtb24tdGVzdHM="
T0 = datetime(2026, 11, 27, 5, 40, 0, tzinfo=UTC)
A = "sha256:" + "a1" * 32
B = "sha256:" + "b2" * 32
BATCH_ID = "batch_01JD9Z6K3M2Y8T0QX4V5R7N1A0_0123456789abcdef"


def event(n: int, kind: EventType, ref: str, **fields: Any) -> dict[str, Any]:
    at = T0 + timedelta(seconds=n)
    return event_to_payload(
        Event(
            id=f"01JD9Z6K3M2Y8T0QX4V5R7N1A{n}",
            type=kind,
            occurred_at=at,
            image=ref,
            checked_at=at,
            **fields,
        )
    )


def mixed_batch() -> list[dict[str, Any]]:
    """Oldest first: two failing checks, a recovery, an overwrite, a disappearance, a new tag."""
    return [
        event(
            1,
            EventType.CHECK_FAILING,
            "ghcr.io/acme/api:v2",
            previous_status=Status.PRESENT,
            previous_digest=A,
            current_status=Status.ERROR,
            reason="timeout",
        ),
        event(
            2,
            EventType.CHECK_FAILING,
            "ghcr.io/acme/web:v2",
            previous_status=Status.PRESENT,
            previous_digest=A,
            current_status=Status.ERROR,
            reason="unreachable",
        ),
        event(
            3,
            EventType.TAG_CHANGED,
            "docker.io/library/nginx:1.27",
            previous_status=Status.PRESENT,
            previous_digest=A,
            current_status=Status.PRESENT,
            current_digest=B,
            platforms={"linux/arm64": PlatformChange(A, B)},
        ),
        event(
            4,
            EventType.CHECK_RECOVERED,
            "ghcr.io/acme/api:v2",
            previous_status=Status.ERROR,
            current_status=Status.PRESENT,
            current_digest=A,
        ),
        event(
            5,
            EventType.TAG_MISSING,
            "registry.example.com:5000/team/app:prod",
            previous_status=Status.PRESENT,
            previous_digest=A,
            current_status=Status.DENIED,
            reason="insufficient_scope",
        ),
        event(
            6,
            EventType.TAG_CREATED,
            "ghcr.io/acme/api:v3",
            previous_status=Status.MISSING,
            current_status=Status.PRESENT,
            current_digest=B,
        ),
    ]


MIXED_LINES = [
    (
        "Checks failing",
        "`ghcr.io/acme/api:v2`",
        "(sha256:a1a1a1a1a1a1 → none, status present → error, reason timeout)",
    ),
    (
        "Checks failing",
        "`ghcr.io/acme/web:v2`",
        "(sha256:a1a1a1a1a1a1 → none, status present → error, reason unreachable)",
    ),
    (
        "Tag overwritten",
        "`docker.io/library/nginx:1.27`",
        "(sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2, status present)",
    ),
    ("Checks recovered", "`ghcr.io/acme/api:v2`", "(sha256:a1a1a1a1a1a1, status error → present)"),
    (
        "Tag missing",
        "`registry.example.com:5000/team/app:prod`",
        "(sha256:a1a1a1a1a1a1 → none, status present → denied, reason insufficient_scope)",
    ),
    ("Tag created", "`ghcr.io/acme/api:v3`", "(sha256:b2b2b2b2b2b2, status missing → present)"),
]
EMOJI = {
    "Checks failing": ":x:",
    "Tag overwritten": ":warning:",
    "Checks recovered": ":white_check_mark:",
    "Tag missing": ":red_circle:",
    "Tag created": ":new:",
}
COUNTS = (
    "Tag overwritten: 1 · Tag missing: 1 · Tag created: 1 · Checks failing: 2 · Checks recovered: 1"
)


# --------------------------------------------------------------------------- goldens


def test_json_batch_is_the_event_bodies_in_order_under_the_batch_id() -> None:
    document = formatter_for("json").render_batch(BATCH_ID, mixed_batch())
    assert document == {"type": "batch", "id": BATCH_ID, "events": mixed_batch()}
    assert [e["id"][-2:] for e in document["events"]] == ["A1", "A2", "A3", "A4", "A5", "A6"]


def test_slack_batch_golden() -> None:
    lines = "\n".join(f"{EMOJI[t]} *{t}*: {ref} {rest}" for t, ref, rest in MIXED_LINES)
    assert formatter_for("slack").render_batch(BATCH_ID, mixed_batch()) == {
        "text": f"6 events: {COUNTS}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*6 events*\n:warning: Tag overwritten: 1\n:red_circle: Tag "
                    "missing: 1\n:new: Tag created: 1\n:x: Checks failing: 2\n"
                    ":white_check_mark: Checks recovered: 1",
                },
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": lines}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"regmon · {BATCH_ID}"}]},
        ],
    }


def test_discord_batch_golden() -> None:
    description = "\n".join(f"**{t}**: {ref} {rest}" for t, ref, rest in MIXED_LINES)
    counts = [
        ("Tag overwritten", 1),
        ("Tag missing", 1),
        ("Tag created", 1),
        ("Checks failing", 2),
        ("Checks recovered", 1),
    ]
    assert formatter_for("discord").render_batch(BATCH_ID, mixed_batch()) == {
        "content": f"**6 events**: {COUNTS}",
        "embeds": [
            {
                "title": "6 events",
                "description": description,
                "color": 0x992D22,  # Checks failing: the first of the most severe events
                "fields": [{"name": n, "value": str(c), "inline": True} for n, c in counts],
                "footer": {"text": f"regmon · {BATCH_ID}"},
                "timestamp": "2026-11-27T05:40:06Z",
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_text_batch_golden() -> None:
    message = text_message(mixed_batch())
    assert message.title == f"regmon: 6 events: {COUNTS}"
    assert message.level == "failure"
    assert message.body == "\n".join(
        [
            "Tag overwritten: 1",
            "Tag missing: 1",
            "Tag created: 1",
            "Checks failing: 2",
            "Checks recovered: 1",
            "",
            *(f"{t}: {ref.strip('`')} {rest}" for t, ref, rest in MIXED_LINES),
        ]
    )


def test_text_single_event_golden() -> None:
    message = text_message(mixed_batch()[2:3])
    assert message.title == "regmon: Tag overwritten: docker.io/library/nginx:1.27"
    assert message.level == "warning"
    assert message.body == (
        "Tag overwritten: docker.io/library/nginx:1.27 "
        "(sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2, status present)\n"
        "linux/arm64: sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2"
    )


def test_a_type_this_version_does_not_know_is_counted_by_its_name_after_the_known_ones() -> None:
    batch = [{**mixed_batch()[0], "type": "repository.renamed"}, *mixed_batch()[3:5]]
    document = formatter_for("slack").render_batch(BATCH_ID, batch)
    assert document["text"] == (
        "3 events: Tag missing: 1 · Checks recovered: 1 · repository.renamed: 1"
    )
    assert text_message(batch).level == "failure"


# --------------------------------------------------------------------------- limits


def _many(count: int) -> list[dict[str, Any]]:
    long_repo = "team/" + "very-long-repository-name-" * 8  # a 213-character reference
    kinds = [EventType.CHECK_FAILING, EventType.CHECK_RECOVERED]
    return [
        event(
            n % 10,
            kinds[n % 2],
            f"registry.example.com:5000/{long_repo}{n}:v1",
            previous_status=Status.PRESENT,
            previous_digest=A,
            current_status=Status.ERROR,
            reason="unreachable",
        )
        for n in range(count)
    ]


def test_slack_batch_keeps_slacks_limits_and_says_how_many_more() -> None:
    document = formatter_for("slack").render_batch(BATCH_ID, _many(200))
    blocks = document["blocks"]
    assert len(blocks) <= 50
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    event_lines = [line for text in sections[1:] for line in text.split("\n")]
    assert len(event_lines) == 20
    assert all(len(line) <= 300 for line in event_lines)
    assert event_lines[0].endswith("…")  # a long line is cut, and says so
    assert blocks[-1]["elements"][0]["text"] == f"and 180 more · regmon · {BATCH_ID}"
    assert document["text"] == "200 events: Checks failing: 100 · Checks recovered: 100"
    assert len(document["text"]) <= 40000


def test_discord_batch_keeps_discords_embed_limits_and_says_how_many_more() -> None:
    document = formatter_for("discord").render_batch(BATCH_ID, _many(200))
    (embed,) = document["embeds"]
    lines = embed["description"].split("\n")
    assert lines[-1] == "and 180 more" and len(lines) == 21
    assert len(embed["description"]) <= 4096
    assert len(embed["title"]) <= 256 and len(embed["fields"]) <= 25
    total = (
        len(embed["title"])
        + len(embed["description"])
        + len(embed["footer"]["text"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    )
    assert total <= 6000
    assert len(document["content"]) <= 2000


def test_text_batch_shows_at_most_text_lines_events() -> None:
    lines = text_message(_many(250)).body.split("\n")
    assert lines[:3] == ["Checks failing: 125", "Checks recovered: 125", ""]
    assert len(lines) == 3 + TEXT_LINES + 1 and lines[-1] == "and 150 more"


# --------------------------------------------------------------------------- ids and signing


def test_batch_id_names_the_first_event_and_fingerprints_the_list() -> None:
    ids = [e["id"] for e in mixed_batch()]
    first = batch_id(ids)
    assert first == batch_id(list(ids))  # the same events: the same id, on every retry
    assert first.startswith(f"batch_{ids[0]}_") and len(first) == 6 + 26 + 1 + 16
    assert batch_id(ids[:-1]) != first  # one event fewer is another delivery
    assert batch_id([ids[1], ids[0], *ids[2:]]) != first  # so is another order
    assert first not in ids
    with pytest.raises(ValueError, match="at least one event"):
        batch_id([])


def test_a_delivery_of_one_event_is_that_event_and_of_several_a_batch() -> None:
    one = Delivery.of(mixed_batch()[:1], T0)
    assert one.id == mixed_batch()[0]["id"] and not one.is_batch
    several = Delivery.of(mixed_batch(), T0)
    assert several.id == batch_id([e["id"] for e in mixed_batch()]) and several.is_batch
    with pytest.raises(ValueError, match="at least one event"):
        Delivery.of([], T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Delivery.of(mixed_batch(), datetime(2026, 1, 1))


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
def test_a_batch_delivery_is_signed_with_the_batch_id(fmt: str) -> None:
    delivery = Delivery.of(mixed_batch(), datetime.now(UTC))
    wire = build_delivery_request(delivery, format=fmt, secret=SECRET)
    assert wire.headers["webhook-id"] == delivery.id
    assert wire.body == render_batch_body(delivery.id, delivery.events, fmt)
    assert Webhook(SECRET).verify(wire.body, wire.headers) == json.loads(wire.body)


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
def test_a_single_delivery_is_what_build_request_makes(fmt: str) -> None:
    body = mixed_batch()[2]
    wire = build_delivery_request(Delivery.of([body], T0), format=fmt, secret=SECRET)
    assert wire == build_request(body, format=fmt, secret=SECRET, timestamp=T0)


# --------------------------------------------------------------------------- the HTTP webhook


def _webhook_send(url: str, redacted: str, events: list[dict[str, Any]], fmt: str = "json") -> Any:
    import asyncio

    import httpx

    from monitor.notify.webhook import WebhookNotifier
    from monitor.registry.transport import default_transport_factory

    async def go() -> Any:
        async with httpx.AsyncClient(transport=default_transport_factory(True)) as http:
            notifier = WebhookNotifier(
                url, http=http, redacted_url=redacted, format=fmt, secret=SECRET, timeout=2
            )
            return await notifier.send(Delivery.of(events, datetime.now(UTC)))

    return asyncio.run(go())


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
def test_the_webhook_notifier_delivers_a_signed_batch_the_receiver_verifies(fmt: str) -> None:
    from support.receiver import WebhookReceiver

    from monitor.notify.notifier import Verdict

    with WebhookReceiver(SECRET) as rx:
        outcome = _webhook_send(rx.url, f"http://{rx.host}/***", mixed_batch(), fmt)
        assert outcome.verdict is Verdict.DELIVERED and outcome.status_code == 200
        (received,) = rx.delivered()
        assert rx.invalid == []
    expected_id = batch_id([e["id"] for e in mixed_batch()])
    assert received.id == expected_id
    assert received.body == formatter_for(fmt).render_batch(expected_id, mixed_batch())


@pytest.mark.parametrize(
    ("status", "verdict", "retry_after"),
    [(503, "retry", 4.0), (429, "retry", 4.0), (500, "retry", None), (404, "failed", None)],
)
def test_the_webhook_notifier_reports_what_the_sender_decided(
    status: int, verdict: str, retry_after: float | None
) -> None:
    from support.faults import status_server

    with status_server(status, {"Retry-After": "4"}) as server:
        host = server.host
        outcome = _webhook_send(f"http://{host}/hook", f"http://{host}/***", mixed_batch()[:1])
    assert (outcome.verdict, outcome.retry_after, outcome.status_code) == (
        verdict,
        retry_after,
        status,
    )
    assert outcome.error == f"HTTP {status} from http://{host}/***"
