from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.domain import CheckResult, Reason, Status
from monitor.events import deleted, diff_platforms, evaluate
from monitor.ids import is_event_id
from monitor.records import Evaluation, Event, EventType, PlatformChange, TagState
from monitor.reference import parse_reference
from monitor.wire import event_to_payload, format_timestamp, parse_timestamp, payload_to_event

REF = parse_reference("nginx:1.27")
IMAGE = "docker.io/library/nginx:1.27"
T0 = datetime(2026, 11, 27, 5, 40, 0, tzinfo=UTC)
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
AMD64, ARM64 = "linux/amd64", "linux/arm64"

CHANGED = EventType.TAG_CHANGED
MISSING = EventType.TAG_MISSING
RESTORED = EventType.TAG_RESTORED
CREATED = EventType.TAG_CREATED
FAILING = EventType.CHECK_FAILING
RECOVERED = EventType.CHECK_RECOVERED


@dataclass(frozen=True)
class Step:
    status: Status
    digest: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    reason: Reason | None = None
    detail: str | None = None


def P(digest: str, platforms: Mapping[str, str] | None = None) -> Step:
    return Step(Status.PRESENT, digest, platforms or {})


M = Step(Status.MISSING, detail="manifest unknown")
D = Step(Status.DENIED, detail="insufficient_scope")
E = Step(Status.ERROR, reason=Reason.TIMEOUT, detail="timed out after 10s")


def at(index: int) -> datetime:
    return T0 + timedelta(minutes=index)


def result(step: Step, index: int) -> CheckResult:
    return CheckResult(
        reference=REF,
        status=step.status,
        checked_at=at(index),
        digest=step.digest,
        media_type="application/vnd.oci.image.index.v1+json" if step.digest else None,
        platforms=step.platforms,
        reason=step.reason,
        detail=step.detail,
    )


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"id-{next(numbers):04d}"


def run(
    steps: Sequence[Step],
    *,
    missing_after: int,
    failing_after: int,
    state: TagState | None = None,
    start: int = 0,
    new_id: Callable[[], str] | None = None,
) -> list[Evaluation]:
    new_id = new_id or counter_ids()
    evaluations = []
    for index, step in enumerate(steps, start):
        evaluation = evaluate(
            state,
            result(step, index),
            missing_after=missing_after,
            failing_after=failing_after,
            new_id=new_id,
        )
        evaluations.append(evaluation)
        state = evaluation.state
    return evaluations


@dataclass(frozen=True)
class Case:
    id: str
    steps: list[Step]
    events: list[list[EventType]]
    missing_after: int = 2
    failing_after: int = 3
    changed: list[bool] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    last_event: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "baseline present is silent",
        [P(A)],
        [[]],
        changed=[True],
        state={
            "status": Status.PRESENT,
            "decided_status": Status.PRESENT,
            "digest": A,
            "first_seen": at(0),
            "last_checked": at(0),
            "last_decided": at(0),
            "last_changed": at(0),
            "digest_changes": 0,
        },
    ),
    Case(
        "baseline missing with missing_after=1 alerts at once",
        [M],
        [[MISSING]],
        missing_after=1,
        changed=[True],
        state={"missing_alerted": True, "consecutive_misses": 1, "first_seen": None},
        last_event={
            "previous_status": None,
            "previous_digest": None,
            "current_status": Status.MISSING,
            "reason": "manifest unknown",
        },
    ),
    Case(
        "new watch, missing_after=2: missing on the 2nd check, once",
        [M, M, M],
        [[], [MISSING], []],
        changed=[True, False, False],
        state={"consecutive_misses": 3, "missing_alerted": True, "last_changed": at(0)},
    ),
    Case(
        "present, missing x2, present same digest: restored",
        [P(A), M, M, P(A)],
        [[], [], [MISSING], [RESTORED]],
        changed=[True, True, False, True],
        state={
            "consecutive_misses": 0,
            "missing_alerted": False,
            "digest": A,
            "first_seen": at(0),
            "last_changed": at(3),
            "digest_changes": 0,
        },
        last_event={
            "same_digest": True,
            "previous_status": Status.MISSING,
            "previous_digest": A,
            "current_status": Status.PRESENT,
            "current_digest": A,
            "reason": None,
        },
    ),
    Case(
        "tag.missing reports what the tag was before the streak",
        [P(A), M, M],
        [[], [], [MISSING]],
        last_event={
            "previous_status": Status.PRESENT,
            "previous_digest": A,
            "current_status": Status.MISSING,
            "current_digest": None,
            "checked_at": at(2),
            "occurred_at": at(2),
        },
        state={"digest": A, "last_changed": at(1), "decided_status": Status.MISSING},
    ),
    Case(
        "present A, missing x2, present B: restored with another digest",
        [P(A), M, M, P(B)],
        [[], [], [MISSING], [RESTORED]],
        state={"digest": B, "digest_changes": 1, "first_seen": at(0)},
        last_event={"same_digest": False, "previous_digest": A, "current_digest": B},
    ),
    Case(
        "never present, then present: missing, then created (not restored)",
        [M, M, P(A)],
        [[], [MISSING], [CREATED]],
        state={"first_seen": at(2), "digest_changes": 0, "missing_alerted": False},
        last_event={
            "previous_status": Status.MISSING,
            "previous_digest": None,
            "current_digest": A,
            "same_digest": None,
        },
    ),
    Case(
        "missing once (below missing_after), then present: created",
        [M, P(A), P(A)],
        [[], [CREATED], []],
        state={"first_seen": at(1), "digest": A},
    ),
    Case(
        "errors, then present first: the baseline, not created",
        [E, P(A)],
        [[], []],
    ),
    Case(
        "created, then missing and back: restored with the digest it had",
        [M, P(A), M, M, P(A)],
        [[], [CREATED], [], [MISSING], [RESTORED]],
        last_event={"same_digest": True, "previous_digest": A},
    ),
    Case(
        "denied (private, not yet pushed), then present: created",
        [D, D, P(A)],
        [[], [MISSING], [CREATED]],
    ),
    Case(
        "present A, present B, present B: changed once",
        [P(A), P(B), P(B)],
        [[], [CHANGED], []],
        changed=[True, True, False],
        state={"digest": B, "digest_changes": 1, "last_changed": at(1), "first_seen": at(0)},
    ),
    Case(
        "tag.changed carries both digests",
        [P(A), P(B)],
        [[], [CHANGED]],
        last_event={
            "previous_status": Status.PRESENT,
            "previous_digest": A,
            "current_status": Status.PRESENT,
            "current_digest": B,
            "platforms": {},
            "reason": None,
        },
    ),
    Case(
        "present A twice: no history row, last_changed kept",
        [P(A), P(A)],
        [[], []],
        changed=[True, False],
        state={"last_changed": at(0), "last_checked": at(1), "last_decided": at(1)},
    ),
    Case(
        "one missing blip, back with the same digest: silent",
        [P(A), M, P(A)],
        [[], [], []],
        changed=[True, True, True],
        state={"consecutive_misses": 0, "missing_alerted": False, "digest_changes": 0},
    ),
    Case(
        "one missing blip, back with another digest: changed",
        [P(A), M, P(B)],
        [[], [], [CHANGED]],
        state={"digest": B, "digest_changes": 1},
        last_event={"previous_status": Status.PRESENT, "previous_digest": A, "current_digest": B},
    ),
    Case(
        "errors: failing once at the threshold, recovered on the next decided check",
        [E, E, E, E, E, P(A)],
        [[], [], [FAILING], [], [], [RECOVERED]],
        changed=[False, False, False, False, False, True],
        state={
            "consecutive_errors": 0,
            "failing_alerted": False,
            "status": Status.PRESENT,
            "first_seen": at(5),
            "last_changed": at(5),
        },
    ),
    Case(
        "check.failing carries the error reason and the last decided state",
        [P(A), E, E, E],
        [[], [], [], [FAILING]],
        state={
            "status": Status.ERROR,
            "decided_status": Status.PRESENT,
            "digest": A,
            "reason": Reason.TIMEOUT,
            "consecutive_errors": 3,
            "failing_alerted": True,
            "last_decided": at(0),
            "last_checked": at(3),
        },
        last_event={
            "reason": "timeout",
            "previous_status": Status.PRESENT,
            "previous_digest": A,
            "current_status": Status.ERROR,
            "current_digest": None,
        },
    ),
    Case(
        "recovered and changed in one evaluation, recovered first",
        [P(A), E, E, E, P(B)],
        [[], [], [], [FAILING], [RECOVERED, CHANGED]],
    ),
    Case(
        "failing latch re-arms after recovery",
        [E, E, P(A), E, E],
        [[], [FAILING], [RECOVERED], [], [FAILING]],
        failing_after=2,
    ),
    Case(
        "first check in error with failing_after=1 alerts",
        [E],
        [[FAILING]],
        failing_after=1,
        changed=[False],
        state={"decided_status": None, "consecutive_errors": 1},
    ),
    Case(
        "errors inside a missing streak neither reset nor count",
        [P(A), M, E, E, M],
        [[], [], [], [], [MISSING]],
        changed=[True, True, False, False, False],
        state={"consecutive_misses": 2, "consecutive_errors": 0},
    ),
    Case(
        "errors never make a tag missing",
        [P(A), E, E, E, E, E, E],
        [[], [], [], [FAILING], [], [], []],
        missing_after=1,
        state={"consecutive_misses": 0, "missing_alerted": False, "decided_status": Status.PRESENT},
    ),
    Case(
        "a blip broken by errors is still a blip",
        [P(A), M, E, P(A)],
        [[], [], [], []],
        state={"consecutive_misses": 0},
    ),
    Case(
        "missing streak crossing a failing episode: recovered, then missing",
        [M, E, E, E, M],
        [[], [], [], [FAILING], [RECOVERED, MISSING]],
    ),
    Case(
        "denied counts like missing",
        [P(A), D, D],
        [[], [], [MISSING]],
        state={"decided_status": Status.DENIED, "consecutive_misses": 2},
        last_event={"current_status": Status.DENIED, "reason": "insufficient_scope"},
    ),
    Case(
        "missing then denied is one streak",
        [P(A), M, D],
        [[], [], [MISSING]],
    ),
    Case(
        "missing to denied after the alert: no new event, a history row",
        [P(A), M, M, D, M],
        [[], [], [MISSING], [], []],
        changed=[True, True, False, True, True],
        state={"last_changed": at(1), "consecutive_misses": 4, "missing_alerted": True},
    ),
    Case(
        "restored from denied",
        [P(A), D, D, P(A)],
        [[], [], [MISSING], [RESTORED]],
        last_event={"previous_status": Status.DENIED, "same_digest": True},
    ),
    Case(
        "platforms: only the changed platform is named",
        [P(A, {AMD64: A, ARM64: B}), P(B, {AMD64: A, ARM64: C})],
        [[], [CHANGED]],
        state={"platforms": {AMD64: A, ARM64: C}},
        last_event={"platforms": {ARM64: PlatformChange(B, C)}},
    ),
    Case(
        "platforms kept when a check resolves none",
        [P(A, {AMD64: B}), P(A), M],
        [[], [], []],
        changed=[True, False, True],
        state={"platforms": {AMD64: B}, "digest": A},
    ),
    Case(
        "platform digests changing under the same index: history row, no event",
        [P(A, {AMD64: B}), P(A, {AMD64: C})],
        [[], []],
        changed=[True, True],
    ),
    Case(
        "raising the bar: missing_after=3",
        [P(A), M, M, M, M, P(A)],
        [[], [], [], [MISSING], [], [RESTORED]],
        missing_after=3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_sequences(case: Case) -> None:
    evaluations = run(
        case.steps, missing_after=case.missing_after, failing_after=case.failing_after
    )
    assert [[event.type for event in ev.events] for ev in evaluations] == case.events
    if case.changed is not None:
        assert [ev.changed for ev in evaluations] == case.changed
    final = evaluations[-1].state
    for name, expected in case.state.items():
        assert getattr(final, name) == expected, name
    if case.last_event:
        last = [event for ev in evaluations for event in ev.events][-1]
        for name, expected in case.last_event.items():
            assert getattr(last, name) == expected, name


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_restart_continues_without_repeating(case: Case) -> None:
    """Persist the state after any step, load it back, and carry on: same events."""
    whole = run(case.steps, missing_after=case.missing_after, failing_after=case.failing_after)
    expected = [[(e.type, e.checked_at) for e in ev.events] for ev in whole]
    for split in range(1, len(case.steps)):
        before = run(
            case.steps[:split],
            missing_after=case.missing_after,
            failing_after=case.failing_after,
        )
        persisted = TagState(**asdict(before[-1].state))  # what the store would load
        after = run(
            case.steps[split:],
            missing_after=case.missing_after,
            failing_after=case.failing_after,
            state=persisted,
            start=split,
        )
        got = [[(e.type, e.checked_at) for e in ev.events] for ev in before + after]
        assert got == expected, split
        assert after[-1].state == whole[-1].state


def test_replaying_the_last_result_on_the_saved_state_repeats_nothing() -> None:
    """A crash after the commit and a re-check of the same answer: no second tag.missing."""
    evaluations = run([P(A), M, M], missing_after=2, failing_after=3)
    again = evaluate(
        evaluations[-1].state, result(M, 3), missing_after=2, failing_after=3, new_id=counter_ids()
    )
    assert again.events == ()


def test_event_ids_and_image() -> None:
    evaluations = run([P(A), E, E, E, P(B)], missing_after=2, failing_after=3, new_id=None)
    events = [event for ev in evaluations for event in ev.events]
    assert [event.id for event in events] == ["id-0001", "id-0002", "id-0003"]
    assert {event.image for event in events} == {IMAGE}
    assert evaluations[0].state.image == IMAGE


def test_default_ids_are_ulids_in_order() -> None:
    state = evaluate(None, result(P(A), 0), missing_after=1, failing_after=1).state
    for index in range(1, 4):
        state = evaluate(state, result(E, index), missing_after=1, failing_after=1).state
    evaluation = evaluate(state, result(P(B), 4), missing_after=1, failing_after=1)
    ids = [event.id for event in evaluation.events]
    assert [event.type for event in evaluation.events] == [RECOVERED, CHANGED]
    assert all(is_event_id(event_id) for event_id in ids)
    assert ids == sorted(ids)


def test_previous_state_of_a_registered_but_unchecked_watch_is_a_baseline() -> None:
    evaluation = evaluate(TagState(image=IMAGE), result(P(A), 0), missing_after=2, failing_after=3)
    assert evaluation.events == ()
    assert evaluation.changed
    assert evaluation.state.first_seen == at(0)


def test_lowering_missing_after_fires_at_next_check() -> None:
    state = run([P(A), M, M], missing_after=5, failing_after=3)[-1].state
    evaluation = evaluate(state, result(M, 3), missing_after=2, failing_after=3)
    assert [event.type for event in evaluation.events] == [MISSING]


def test_error_keeps_decided_fields() -> None:
    state = run([P(A, {AMD64: B})], missing_after=2, failing_after=3)[-1].state
    after = evaluate(state, result(E, 1), missing_after=2, failing_after=3).state
    assert after.status is Status.ERROR
    assert after.reason is Reason.TIMEOUT
    assert after.detail == "timed out after 10s"
    for name in ("decided_status", "digest", "media_type", "platforms", "first_seen"):
        assert getattr(after, name) == getattr(state, name), name
    assert after.last_decided == at(0)
    assert after.last_changed == at(0)
    assert after.last_checked == at(1)


def test_decided_check_clears_error_reason() -> None:
    states = run([P(A), E, M], missing_after=2, failing_after=3)
    assert states[-1].state.reason is None
    assert states[-1].state.detail == "manifest unknown"


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        ({}, {AMD64: A}, {}),
        ({AMD64: A}, {}, {}),
        ({AMD64: A}, {AMD64: A}, {}),
        ({AMD64: A, ARM64: B}, {AMD64: A, ARM64: C}, {ARM64: PlatformChange(B, C)}),
        ({AMD64: A}, {AMD64: A, ARM64: B}, {ARM64: PlatformChange(None, B)}),
        (
            {AMD64: A, ARM64: B},
            {AMD64: C},
            {AMD64: PlatformChange(A, C), ARM64: PlatformChange(B, None)},
        ),
    ],
)
def test_diff_platforms(
    previous: dict[str, str], current: dict[str, str], expected: dict[str, PlatformChange]
) -> None:
    assert diff_platforms(previous, current) == expected


# --- payloads -------------------------------------------------------------------------

CHANGED_EVENT = Event(
    id="01JD9Z6K3M2Y8T0QX4V5R7N1AB",
    type=EventType.TAG_CHANGED,
    occurred_at=datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC),
    image=IMAGE,
    previous_status=Status.PRESENT,
    previous_digest=A,
    current_status=Status.PRESENT,
    current_digest=B,
    checked_at=datetime(2026, 11, 27, 5, 40, 19, tzinfo=UTC),
    platforms={AMD64: PlatformChange(A, B)},
)


def test_payload_matches_spec_shape() -> None:
    assert event_to_payload(CHANGED_EVENT) == {
        "id": "01JD9Z6K3M2Y8T0QX4V5R7N1AB",
        "type": "tag.changed",
        "occurred_at": "2026-11-27T05:40:20Z",
        "image": {
            "reference": IMAGE,
            "registry": "docker.io",
            "repository": "library/nginx",
            "tag": "1.27",
        },
        "previous": {"status": "present", "digest": A},
        "current": {"status": "present", "digest": B, "checked_at": "2026-11-27T05:40:19Z"},
        "platforms": {AMD64: {"previous": A, "current": B}},
        "reason": None,
    }


def test_payload_uses_given_reference() -> None:
    ref = parse_reference("ghcr.io/acme/api:v2")
    event = Event(id="x", type=EventType.TEST, occurred_at=T0, image=str(ref))
    payload = event_to_payload(event, reference=ref)
    assert payload["image"] == {
        "reference": "ghcr.io/acme/api:v2",
        "registry": "ghcr.io",
        "repository": "acme/api",
        "tag": "v2",
    }
    assert payload["previous"] == {"status": None, "digest": None}
    assert payload["current"] == {"status": None, "digest": None, "checked_at": None}
    assert payload["platforms"] == {}


def test_payload_digest_pinned_reference_has_null_tag() -> None:
    event = Event(id="x", type=EventType.TEST, occurred_at=T0, image=f"docker.io/library/nginx@{A}")
    assert event_to_payload(event)["image"]["tag"] is None


def test_payload_timestamps_are_utc_seconds_with_z() -> None:
    local = datetime(2026, 11, 27, 7, 40, 20, 987_654).astimezone()
    event = Event(id="x", type=EventType.TEST, occurred_at=local, image=IMAGE)
    text = event_to_payload(event)["occurred_at"]
    assert text.endswith("Z")
    assert len(text) == len("2026-11-27T05:40:20Z")
    assert parse_timestamp(text) == local.replace(microsecond=0).astimezone(UTC)


def test_restored_payload_says_whether_digest_is_the_same() -> None:
    evaluations = run([P(A), M, M, P(A)], missing_after=2, failing_after=3)
    restored = evaluations[-1].events[0]
    payload = event_to_payload(restored)
    assert payload["same_digest"] is True
    assert payload["previous"] == {"status": "missing", "digest": A}
    assert "same_digest" not in event_to_payload(CHANGED_EVENT)


@pytest.mark.parametrize("steps", [[P(A), P(B)], [P(A), M, M, P(B)], [P(A), E, E, E, M, M, M]])
def test_payload_round_trip(steps: list[Step]) -> None:
    events = [event for ev in run(steps, missing_after=2, failing_after=3) for event in ev.events]
    assert events
    for event in events:
        payload = json.loads(json.dumps(event_to_payload(event)))
        assert payload_to_event(payload) == event


def test_round_trip_of_spec_example() -> None:
    assert payload_to_event(event_to_payload(CHANGED_EVENT)) == CHANGED_EVENT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T05:40:20Z", datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)),
        ("2026-11-27T06:40:20+01:00", datetime(2026, 11, 27, 5, 40, 20, tzinfo=UTC)),
        ("2026-11-27T05:40:20.5Z", datetime(2026, 11, 27, 5, 40, 20, 500_000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text).tzinfo is UTC


def test_parse_timestamp_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_timestamp("2026-11-27T05:40:20")


def test_format_timestamp_naive_is_utc() -> None:
    assert format_timestamp(datetime(2026, 11, 27, 5, 40, 20, 999_999)) == "2026-11-27T05:40:20Z"


# --------------------------------------------------------------------------- repositories


def test_a_tag_new_in_its_repository_is_created_on_its_first_present_check() -> None:
    first = evaluate(None, result(P(A), 0), missing_after=2, failing_after=3, created=True)
    assert [(e.type, e.previous_status, e.current_digest) for e in first.events] == [
        (CREATED, None, A)
    ]
    assert first.changed and first.state.first_seen == at(0)
    # Missing at its first check (deleted again at once): a baseline, no tag.created.
    gone = evaluate(None, result(M, 0), missing_after=2, failing_after=3, created=True)
    assert gone.events == ()


def test_a_deleted_tag_then_pushed_again_is_created_not_restored() -> None:
    [present] = run([P(A)], missing_after=2, failing_after=3)
    removed = deleted(present.state, str(REF), at(1), new_id=lambda: "id-del")
    assert [
        (e.id, e.type, e.previous_status, e.previous_digest, e.current_status, e.reason)
        for e in removed.events
    ] == [("id-del", EventType.TAG_DELETED, Status.PRESENT, A, Status.MISSING, "deleted")]
    assert (removed.state.decided_status, removed.state.detail, removed.changed) == (
        Status.MISSING,
        "deleted",
        True,
    )
    again = evaluate(removed.state, result(P(B), 2), missing_after=2, failing_after=3, created=True)
    assert [(e.type, e.previous_status, e.current_digest) for e in again.events] == [
        (CREATED, Status.MISSING, B)
    ]


def test_version_available_once_per_new_higher_version() -> None:
    def check(state: TagState | None, index: int, newer: list[str] | None) -> Evaluation:
        return evaluate(state, result(P(A), index), missing_after=2, failing_after=3, newer=newer)

    def versions(evaluation: Evaluation) -> list[str | None]:
        return [e.version for e in evaluation.events if e.type is EventType.VERSION_AVAILABLE]

    first = check(None, 0, ["1.27.3", "1.27.4"])
    assert versions(first) == ["1.27.4"]  # behind by two: told of the highest, once
    assert first.state.newer_version == "1.27.4"
    same = check(first.state, 1, ["1.27.3", "1.27.4"])
    assert versions(same) == []
    failed = check(same.state, 2, None)  # the listing failed: nothing known, nothing lost
    assert (versions(failed), failed.state.newer_version) == ([], "1.27.4")
    more = check(failed.state, 3, ["1.27.3", "1.27.4", "1.27.5", "1.27.10"])
    assert versions(more) == ["1.27.5", "1.27.10"]  # one each, lowest first
    [event] = more.events[:1]
    assert (event.previous_digest, event.current_digest, event.image) == (A, A, str(REF))
    gone = check(more.state, 4, [])
    assert (versions(gone), gone.state.newer_version) == ([], None)
