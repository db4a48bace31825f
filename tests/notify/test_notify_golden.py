"""Every (format, event type) body, whole, against a golden document in tests/data/formats/.

A change to what a receiver gets shows up here as a diff of that document. After a
deliberate change, regenerate with ``python tests/notify/test_notify_golden.py`` and
review the diff of tests/data/formats/ like code.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

if __name__ == "__main__":  # regenerating: make `support` importable as pytest does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.paths import DATA

from monitor.domain import Status
from monitor.notify import FORMATTERS, render_body
from monitor.records import Event, EventType, PlatformChange, RegistrySummary
from monitor.reference import parse_reference
from monitor.wire import event_to_payload

GOLDEN = DATA / "formats"
OLD = "sha256:" + "a1" * 32
NEW = "sha256:" + "b2" * 32
AT = datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)
REF = "registry.example.com:5000/team/app:prod"

# What each event type carries when the service emits it (SPEC §6).
FIELDS: dict[EventType, dict[str, Any]] = {
    EventType.TAG_CHANGED: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.PRESENT,
        "current_digest": NEW,
        "platforms": {"linux/arm64": PlatformChange(OLD, NEW)},
    },
    EventType.TAG_MISSING: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.MISSING,
        "reason": "manifest unknown",
    },
    EventType.TAG_RESTORED: {
        "previous_status": Status.MISSING,
        "current_status": Status.PRESENT,
        "current_digest": OLD,
        "same_digest": True,
    },
    EventType.TAG_CREATED: {
        "previous_status": Status.MISSING,
        "current_status": Status.PRESENT,
        "current_digest": NEW,
    },
    EventType.CHECK_FAILING: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.ERROR,
        "reason": "unreachable",
    },
    EventType.CHECK_RECOVERED: {
        "previous_status": Status.ERROR,
        "current_status": Status.PRESENT,
        "current_digest": OLD,
    },
    EventType.TEST: {"reason": "test delivery from regmon webhook test"},
    EventType.TAG_DELETED: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.MISSING,
        "reason": "deleted",
    },
    EventType.VERSION_AVAILABLE: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.PRESENT,
        "current_digest": OLD,
        "version": "1.27.3",
    },
    EventType.REGISTRY_FAILING: {
        "previous_status": Status.PRESENT,
        "previous_digest": OLD,
        "current_status": Status.ERROR,
        "reason": "unreachable",
        "registry": RegistrySummary("registry.example.com:5000", 5, 5),
    },
    EventType.REGISTRY_RECOVERED: {
        "previous_status": Status.ERROR,
        "current_status": Status.PRESENT,
        "current_digest": OLD,
        "registry": RegistrySummary("registry.example.com:5000", 5, 3),
    },
}


# A version is announced about a tag that is a version itself.
IMAGES = {EventType.VERSION_AVAILABLE: "registry.example.com:5000/team/app:1.27.2"}


def payload(kind: EventType) -> dict[str, Any]:
    image = IMAGES.get(kind, REF)
    event = Event(
        id="01JD9Z6K3M2Y8T0QX4V5R7N1AB",
        type=kind,
        occurred_at=AT,
        image=image,
        checked_at=None if kind is EventType.TEST else AT,
        **FIELDS[kind],
    )
    return event_to_payload(event, reference=parse_reference(image))


def rendered(fmt: str, kind: EventType) -> Any:
    return json.loads(render_body(payload(kind), fmt))


def golden_path(fmt: str, kind: EventType) -> Path:
    return GOLDEN / fmt / f"{kind}.json"


CASES = [(fmt, kind) for fmt in FORMATTERS for kind in EventType]


@pytest.mark.parametrize(("fmt", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_the_body_is_the_golden_document(fmt: str, kind: EventType) -> None:
    assert kind in FIELDS, f"{kind}: add what it carries to FIELDS, then regenerate"
    path = golden_path(fmt, kind)
    assert path.is_file(), (
        f"no golden {path}: run python {Path(__file__).relative_to(DATA.parent.parent)}"
    )
    assert rendered(fmt, kind) == json.loads(path.read_text(encoding="utf-8"))


def test_no_golden_is_left_over() -> None:
    expected = {golden_path(fmt, kind) for fmt, kind in CASES}
    assert set(GOLDEN.glob("*/*.json")) == expected


if __name__ == "__main__":
    for fmt, kind in CASES:
        path = golden_path(fmt, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(rendered(fmt, kind), indent=2, ensure_ascii=False, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
