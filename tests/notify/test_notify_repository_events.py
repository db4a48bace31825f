"""tag.deleted and version.available (SPEC §9): their json bodies and the Apprise text.

The Slack and Discord documents of both are goldens in tests/data/formats/.
"""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.domain import Status
from monitor.notify.formats import formatter_for
from monitor.notify.formats.text import TextMessage, text_message
from monitor.records import Event, EventType
from monitor.wire import event_to_payload, payload_to_event

AT = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
A = "sha256:" + "a1" * 32
AVAILABLE = Event(
    id="01JD9Z6K3M2Y8T0QX4V5R7N1AB",
    type=EventType.VERSION_AVAILABLE,
    occurred_at=AT,
    image="docker.io/library/nginx:1.27.2",
    previous_status=Status.PRESENT,
    previous_digest=A,
    current_status=Status.PRESENT,
    current_digest=A,
    checked_at=AT,
    version="1.27.3",
)
DELETED = Event(
    id="01JD9Z6K3M2Y8T0QX4V5R7N1AC",
    type=EventType.TAG_DELETED,
    occurred_at=AT,
    image="ghcr.io/acme/api:v2.0.0",
    previous_status=Status.PRESENT,
    previous_digest=A,
    current_status=Status.MISSING,
    checked_at=AT,
    reason="deleted",
)


def test_the_json_body_of_version_available() -> None:
    payload = event_to_payload(AVAILABLE)
    assert payload == {
        "id": "01JD9Z6K3M2Y8T0QX4V5R7N1AB",
        "type": "version.available",
        "occurred_at": "2026-11-27T05:40:20Z",
        "image": {
            "reference": "docker.io/library/nginx:1.27.2",
            "registry": "docker.io",
            "repository": "library/nginx",
            "tag": "1.27.2",
        },
        "previous": {"status": "present", "digest": A},
        "current": {"status": "present", "digest": A, "checked_at": "2026-11-27T05:40:20Z"},
        "platforms": {},
        "reason": None,
        "version": {"current": "1.27.2", "available": "1.27.3"},
    }
    assert formatter_for("json").render(payload) == payload
    assert payload_to_event(payload) == AVAILABLE


def test_the_json_body_of_tag_deleted() -> None:
    payload = event_to_payload(DELETED)
    assert (payload["previous"], payload["current"], payload["reason"]) == (
        {"status": "present", "digest": A},
        {"status": "missing", "digest": None, "checked_at": "2026-11-27T05:40:20Z"},
        "deleted",
    )
    assert "version" not in payload and "same_digest" not in payload
    assert payload_to_event(payload) == DELETED


def test_apprise_text() -> None:
    assert text_message([event_to_payload(AVAILABLE)]) == TextMessage(
        "regmon: Newer version: docker.io/library/nginx:1.27.2",
        "Newer version: docker.io/library/nginx:1.27.2 "
        "(version 1.27.2 → 1.27.3, sha256:a1a1a1a1a1a1, status present)",
        "info",
    )
    assert text_message([event_to_payload(DELETED)]) == TextMessage(
        "regmon: Tag deleted: ghcr.io/acme/api:v2.0.0",
        "Tag deleted: ghcr.io/acme/api:v2.0.0 "
        "(sha256:a1a1a1a1a1a1 → none, status present → missing, reason deleted)",
        "warning",
    )
