"""The store keeps registry outages: registry_states and failing_covered, in the one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from support.records import prepared

from monitor.domain import Status
from monitor.records import Evaluation, Event, EventType, RegistryState, RegistrySummary, TagState
from monitor.store import StoreError, list_events, load_versioned_states, make_engine, upgrade
from monitor.store.repository import load_registry_states, record_evaluations
from monitor.wire import event_to_payload

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IMAGE = "reg.example.com/team/app0:v1"
REGISTRY = "reg.example.com"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def failing_state(covered: bool) -> TagState:
    return TagState(
        image=IMAGE,
        status=Status.ERROR,
        decided_status=Status.PRESENT,
        digest="sha256:" + "a" * 64,
        first_seen=T0,
        last_checked=T0,
        consecutive_errors=3,
        failing_alerted=True,
        failing_covered=covered,
    )


def event(kind: EventType, n: int, at: datetime = T0) -> Event:
    return Event(
        id=f"01OUTAGE{n:018d}",
        type=kind,
        occurred_at=at,
        image=IMAGE,
        current_status=Status.ERROR,
        checked_at=at,
        reason="unreachable",
        registry=RegistrySummary(REGISTRY, 5, 5) if kind.value.startswith("registry.") else None,
    )


def body(ev: Event) -> dict[str, Any]:
    return event_to_payload(ev)


def test_registry_state_and_covered_tag_are_written_with_their_events(engine: Engine) -> None:
    failing = event(EventType.REGISTRY_FAILING, 1)
    covered = event(EventType.CHECK_FAILING, 2)
    evaluation = Evaluation(
        failing_state(covered=True),
        (failing, covered),
        registry=RegistryState(REGISTRY, failing=True, since=T0),
        covered=frozenset({covered.id}),
    )
    record_evaluations(engine, prepared([evaluation], body), now=T0)
    assert load_registry_states(engine) == {REGISTRY: RegistryState(REGISTRY, True, T0)}
    state, _ = load_versioned_states(engine)[IMAGE]
    assert state.failing_covered is True
    stored = list_events(engine)
    assert [e["type"] for e in stored] == ["registry.failing", "check.failing"]
    assert stored[0]["registry"] == {"name": REGISTRY, "tags": 5, "errors": 5}

    later = T0 + timedelta(minutes=3)
    recovered = Evaluation(
        TagState(image=IMAGE, status=Status.PRESENT, decided_status=Status.PRESENT),
        (event(EventType.REGISTRY_RECOVERED, 3, later),),
        registry=RegistryState(REGISTRY),
    )
    record_evaluations(engine, prepared([recovered], body), now=later)
    assert load_registry_states(engine) == {REGISTRY: RegistryState(REGISTRY, False, None)}
    state, _ = load_versioned_states(engine)[IMAGE]
    assert state.failing_covered is False


def test_a_failed_write_leaves_the_registry_state_as_it_was(engine: Engine) -> None:
    first = event(EventType.CHECK_FAILING, 10)
    record_evaluations(engine, prepared([Evaluation(failing_state(False), (first,))], body))
    # The same event id again: the events INSERT fails after the state upserts.
    again = Evaluation(
        failing_state(covered=True),
        (event(EventType.REGISTRY_FAILING, 11), first),
        registry=RegistryState(REGISTRY, failing=True, since=T0),
    )
    with pytest.raises(StoreError, match="record_evaluations failed"):
        record_evaluations(engine, prepared([again], body))
    assert load_registry_states(engine) == {}
    state, _ = load_versioned_states(engine)[IMAGE]
    assert state.failing_covered is False
