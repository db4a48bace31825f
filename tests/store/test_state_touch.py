"""A check that moves only the check timestamps writes 3 columns of its tag state, not 20.

The touch is an UPDATE of ``last_checked``, ``last_decided`` and ``version``,
batched in one executemany, under the same compare-and-set as a full write
(``monitor.store.states``): read back, the state is the one a full write leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from monitor.domain import Reason, Status
from monitor.records import Evaluation, TagState
from monitor.store import load_versioned_states, record_evaluations
from monitor.store.repository import Record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A, B = "r.io/team/a:1", "r.io/team/b:1"


def state(image: str, at: datetime) -> TagState:
    return TagState(
        image=image,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest="sha256:" + "a" * 64,
        media_type="application/vnd.oci.image.index.v1+json",
        platforms={"linux/amd64": "sha256:" + "b" * 64},
        reason=None,
        detail=None,
        first_seen=T0 - timedelta(days=2),
        last_checked=at,
        last_decided=at,
        last_changed=T0 - timedelta(days=1),
        digest_changes=3,
        newer_version="1.2.0",
    )


def later(previous: TagState, minutes: int) -> TagState:
    at = T0 + timedelta(minutes=minutes)
    return replace(previous, last_checked=at, last_decided=at)


def rec(s: TagState, expected: int, version: int, *, touch: bool = False) -> Record:
    return Record(Evaluation(s), expected=expected, version=version, touch=touch)


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def state_writes(statements: list[str]) -> list[str]:
    return [s for s in statements if "tag_states" in s and not s.startswith("SELECT")]


def test_touches_are_one_update_of_three_columns(engine: Engine, statements: list[str]) -> None:
    a0, b0 = state(A, T0), state(B, T0)
    record_evaluations(engine, [rec(a0, 0, 1), rec(b0, 0, 1)])
    statements.clear()
    a1, b1 = later(a0, 5), later(b0, 5)
    result = record_evaluations(engine, [rec(a1, 1, 2, touch=True), rec(b1, 1, 2, touch=True)])
    assert result.refused == () and result.seqs == []
    [write] = state_writes(statements)
    assert write.startswith("UPDATE tag_states SET last_checked=")
    assert write.split(" WHERE ")[0].count("=") == 3  # last_checked, last_decided, version
    # Read back: exactly what a full write of the new states leaves.
    assert load_versioned_states(engine) == {A: (a1, 2), B: (b1, 2)}


def test_touch_on_a_stale_version_is_refused(engine: Engine) -> None:
    a0 = state(A, T0)
    record_evaluations(engine, [rec(a0, 0, 1)])
    moved = replace(later(a0, 3), status=Status.ERROR, reason=Reason.TIMEOUT, detail="slow")
    record_evaluations(engine, [rec(moved, 1, 2)])  # another writer moved the tag on
    stale = rec(later(a0, 5), 1, 2, touch=True)
    result = record_evaluations(engine, [stale])
    assert result.refused == (stale,)
    assert result.current == {A: (moved, 2)}
    assert load_versioned_states(engine) == {A: (moved, 2)}


def test_touch_and_full_rows_of_one_tag_in_one_batch(engine: Engine) -> None:
    a0, b0 = state(A, T0), state(B, T0)
    record_evaluations(engine, [rec(a0, 0, 1), rec(b0, 0, 1)])
    a_full = replace(later(a0, 1), digest="sha256:" + "c" * 64, digest_changes=4)
    a_touch = later(a_full, 2)  # on top of a row not yet in the table
    b_touch = later(b0, 1)
    b_full = replace(later(b_touch, 2), newer_version="1.3.0")  # the full row wins
    batch = [rec(a_full, 1, 2), rec(b_touch, 1, 2, touch=True), rec(a_touch, 2, 3, touch=True)]
    batch.append(rec(b_full, 2, 3))
    assert record_evaluations(engine, batch).refused == ()
    assert load_versioned_states(engine) == {A: (a_touch, 3), B: (b_full, 3)}


def test_touch_without_compare_and_set_is_a_full_write(
    engine: Engine, statements: list[str]
) -> None:
    # No expected version: nothing says what the row holds, so all of it is written.
    a0 = state(A, T0)
    record_evaluations(engine, [rec(a0, 0, 1)])
    statements.clear()
    a1 = replace(later(a0, 5), detail="from elsewhere")
    record_evaluations(engine, [replace(rec(a1, 0, 2, touch=True), expected=None)])
    [write] = state_writes(statements)
    assert write.startswith("INSERT INTO tag_states")
    assert load_versioned_states(engine) == {A: (a1, 2)}
