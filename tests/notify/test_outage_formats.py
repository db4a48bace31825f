"""Registry events on the wire: the json body, slack, discord and the Apprise text (golden)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.config import EVENT_TYPES, parse_config
from monitor.domain import Status
from monitor.errors import ConfigError
from monitor.notify.formats import formatter_for
from monitor.notify.formats.text import text_message
from monitor.records import Event, EventType, RegistrySummary
from monitor.wire import event_to_payload, payload_to_event

T0 = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
B = "sha256:" + "b" * 64
FAILING = Event(
    id="01JD9Z6K3M2Y8T0QX4V5R7N1AB",
    type=EventType.REGISTRY_FAILING,
    occurred_at=T0,
    image="registry.example.com/team/api:prod",
    current_status=Status.ERROR,
    checked_at=T0,
    reason="unreachable",
    registry=RegistrySummary("registry.example.com", 5, 5),
)
RECOVERED = Event(
    id="01JD9Z6K3M2Y8T0QX4V5R7N1AC",
    type=EventType.REGISTRY_RECOVERED,
    occurred_at=T0,
    image="registry.example.com/team/web:prod",
    current_status=Status.PRESENT,
    current_digest=B,
    checked_at=T0,
    registry=RegistrySummary("registry.example.com", 5, 3),
)


def test_json_body_is_the_event_shape_with_the_registry() -> None:
    body = event_to_payload(FAILING)
    assert body == {
        "id": "01JD9Z6K3M2Y8T0QX4V5R7N1AB",
        "type": "registry.failing",
        "occurred_at": "2026-11-27T05:40:20Z",
        "image": {
            "reference": "registry.example.com/team/api:prod",
            "registry": "registry.example.com",
            "repository": "team/api",
            "tag": "prod",
        },
        "previous": {"status": None, "digest": None},
        "current": {"status": "error", "digest": None, "checked_at": "2026-11-27T05:40:20Z"},
        "platforms": {},
        "reason": "unreachable",
        "registry": {"name": "registry.example.com", "tags": 5, "errors": 5},
    }
    assert payload_to_event(body) == FAILING
    assert "registry" not in event_to_payload(
        Event(id="x", type=EventType.CHECK_FAILING, occurred_at=T0, image="r.io/a:1")
    )


def test_slack() -> None:
    assert formatter_for("slack").render(event_to_payload(FAILING)) == {
        "text": ":rotating_light: Registry failing: registry.example.com"
        " (5 of 5 tags in error, reason unreachable)",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":rotating_light: *Registry failing*\n`registry.example.com`",
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Status*\n5 of 5 tags in error"},
                    {"type": "mrkdwn", "text": "*Reason*\nunreachable"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "regmon · 2026-11-27T05:40:20Z · 01JD9Z6K3M2Y8T0QX4V5R7N1AB",
                    }
                ],
            },
        ],
    }
    recovered = formatter_for("slack").render(event_to_payload(RECOVERED))
    assert recovered["text"] == (
        ":white_check_mark: Registry recovered: registry.example.com"
        " (answering again, 2 of 5 tags answered so far)"
    )


def test_discord() -> None:
    assert formatter_for("discord").render(event_to_payload(FAILING)) == {
        "content": "**Registry failing**: `registry.example.com`",
        "embeds": [
            {
                "title": "Registry failing",
                "description": "`registry.example.com`",
                "color": 0x992D22,
                "fields": [
                    {"name": "Status", "value": "5 of 5 tags in error", "inline": True},
                    {"name": "Reason", "value": "unreachable", "inline": True},
                ],
                "footer": {"text": "regmon · 01JD9Z6K3M2Y8T0QX4V5R7N1AB"},
                "timestamp": "2026-11-27T05:40:20Z",
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_apprise_text_and_a_batch() -> None:
    one = text_message([event_to_payload(FAILING)])
    assert (one.title, one.body, one.level) == (
        "regmon: Registry failing: registry.example.com",
        "Registry failing: registry.example.com (5 of 5 tags in error, reason unreachable)",
        "failure",
    )
    both = text_message([event_to_payload(FAILING), event_to_payload(RECOVERED)])
    assert (both.title, both.body, both.level) == (
        "regmon: 2 events: Registry failing: 1 · Registry recovered: 1",
        "Registry failing: 1\nRegistry recovered: 1\n\n"
        "Registry failing: registry.example.com (5 of 5 tags in error, reason unreachable)\n"
        "Registry recovered: registry.example.com (answering again, 2 of 5 tags answered so far)",
        "failure",
    )


def test_webhook_events_filter_takes_the_registry_types() -> None:
    assert {"registry.failing", "registry.recovered"} <= set(EVENT_TYPES)
    config = parse_config(
        "database: sqlite:///unused.db\nwebhooks:\n"
        "  - {name: pager, url: 'https://h.example/p',"
        " events: [registry.failing, registry.recovered]}\n"
        "watch: [nginx:1.27]\n"
    )
    assert config.webhooks[0].events == ("registry.failing", "registry.recovered")
    with pytest.raises(ConfigError, match=r"unknown event 'registry\.down'"):
        parse_config(
            "database: sqlite:///unused.db\nwebhooks:\n"
            "  - {name: pager, url: 'https://h.example/p', events: [registry.down]}\n"
            "watch: [nginx:1.27]\n"
        )
