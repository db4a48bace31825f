"""The write path: prepared evaluations (states, history, events, deliveries), one transaction.

Synchronous by design: the async service calls it through ``asyncio.to_thread``
with whole batches, so a batch of checks costs a handful of statements, not
one round trip per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, update

from monitor.domain import Status
from monitor.records import Evaluation, RegistryState, TagState
from monitor.store.models import deliveries as _DELIVERIES
from monitor.store.models import events as _EVENTS
from monitor.store.models import history as _HISTORY
from monitor.store.models import tag_states as _TAG_STATES
from monitor.store.registry_rows import write_registry_states
from monitor.store.state_rows import _STATE_COLUMNS, _state_to_row, _value, _versioned
from monitor.store.states import lock_states, refused, stored_versions
from monitor.store.transactions import _translated, _upsert, _write

__all__ = ["Record", "Recorded", "record_evaluations"]


@dataclass(frozen=True, slots=True)
class Record:
    """One evaluation to write, prepared: a body and the channel names for each of its events.

    ``payloads`` and ``channels`` run parallel to ``evaluation.events``.
    ``expected`` is the version of the tag's state this evaluation was made on
    (0: never written); the write is refused when the store holds another
    (``monitor.store.states``). ``None`` writes whatever the store holds.
    ``version`` is the version the new state is stored with. ``touch``: the new
    state differs from the one stored at ``expected`` only in its check timestamps
    (``last_checked``, ``last_decided``), so only those and the version are written;
    it relies on the compare-and-set, so it is honoured only with an ``expected``.
    """

    evaluation: Evaluation
    payloads: tuple[Mapping[str, Any], ...] = ()
    channels: tuple[tuple[str, ...], ...] = ()
    expected: int | None = None
    version: int = 0
    touch: bool = False

    @property
    def image(self) -> str:
        return self.evaluation.state.image


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_evaluations`` wrote (event seqs in order) and what it refused.

    ``current`` holds, for each refused tag, the state and version the store
    has (absent: never written), read in the same transaction.
    """

    seqs: list[int] = field(default_factory=list)
    refused: tuple[Record, ...] = ()
    current: Mapping[str, tuple[TagState, int]] = field(default_factory=dict)


# Upper bound on rows per multi-row INSERT; the dialect's parameter limit cuts lower.
_EVENTS_PAGE_SIZE = 10_000


@_translated
def record_evaluations(
    engine: Engine,
    records: Sequence[Record],
    *,
    now: datetime | None = None,
) -> Recorded:
    """Write a batch of prepared evaluations in ONE transaction.

    Writes the upserted tag states, a history row per ``changed`` evaluation, an
    events row per event (with its prepared body), a pending delivery per
    channel name and the registry states the evaluations changed. Either all of
    it is written or none. A record whose expected
    version is stale is not written (nor its history, events, deliveries): it is
    returned in ``refused`` with the store's current state of its tag.
    """
    if not records:
        return Recorded()
    now = now or datetime.now(UTC)
    with _write(engine) as conn:
        if any(record.expected is not None for record in records):
            lock_states(conn)
            stale = refused(records, stored_versions(conn, {r.image for r in records}))
        else:
            stale = set()
        accepted = [record for index, record in enumerate(records) if index not in stale]
        seqs = _insert_records(conn, accepted, now)
        rejected = tuple(records[index] for index in sorted(stale))
        current = _versioned(conn, {r.image for r in rejected}) if rejected else {}
    return Recorded(seqs, rejected, current)


def _insert_records(conn: Connection, records: Sequence[Record], now: datetime) -> list[int]:
    states: dict[str, dict[str, Any]] = {}
    touches: dict[str, dict[str, Any]] = {}
    registries: list[RegistryState] = []
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    webhooks: list[tuple[str, str]] = []
    for record in records:
        evaluation = record.evaluation
        if len(record.payloads) != len(evaluation.events) or len(record.channels) not in (
            0,
            len(evaluation.events),
        ):
            raise ValueError(f"{evaluation.state.image}: one payload (and channels) per event")
        state = evaluation.state
        # The last evaluation of an image wins. A touch on top of a full row of the same
        # batch is written as a full row: its base is not in the table yet.
        if record.touch and record.expected and state.image not in states:
            touches[state.image] = {
                "_image": state.image,
                "_last_checked": state.last_checked,
                "_last_decided": state.last_decided,
                "_version": record.version,
            }
        else:
            touches.pop(state.image, None)
            states[state.image] = _state_to_row(state, record.version)
        if evaluation.registry is not None:
            registries.append(evaluation.registry)
        if evaluation.changed:
            history.append(_history_row(evaluation, now))
        for index, ev in enumerate(evaluation.events):
            events.append(
                {
                    "id": ev.id,
                    "type": ev.type.value,
                    "image": ev.image,
                    "occurred_at": ev.occurred_at,
                    "payload": dict(record.payloads[index]),
                    "created_at": now,
                }
            )
            if record.channels:
                webhooks.extend((ev.id, name) for name in record.channels[index])

    seq_by_id: dict[str, int] = {}
    _upsert(conn, _TAG_STATES, list(states.values()), "image", _STATE_COLUMNS)
    if touches:
        # Most checks change nothing but the check timestamps: 3 columns, not 20.
        conn.execute(_TOUCH, list(touches.values()))
    write_registry_states(conn, registries, now)
    if history:
        conn.execute(insert(_HISTORY), history)
    if events:
        # RETURNING through SQLAlchemy's "insertmanyvalues": multi-row INSERTs, as many
        # rows each as the driver's parameter limit allows (~5,000 here).
        result = conn.execute(
            insert(_EVENTS).returning(_EVENTS.c.seq, _EVENTS.c.id),
            events,
            execution_options={"insertmanyvalues_page_size": _EVENTS_PAGE_SIZE},
        )
        seq_by_id = {event_id: seq for seq, event_id in result}
    if webhooks:
        conn.execute(
            insert(_DELIVERIES),
            [
                {
                    "event_seq": seq_by_id[event_id],
                    "webhook": name,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for event_id, name in webhooks
            ],
        )
    return sorted(seq_by_id.values())


# bindparam names must not be column names in an UPDATE ... SET.
_TOUCH = (
    update(_TAG_STATES)
    .where(_TAG_STATES.c.image == bindparam("_image"))
    .values(
        last_checked=bindparam("_last_checked"),
        last_decided=bindparam("_last_decided"),
        version=bindparam("_version"),
    )
)


def _history_row(evaluation: Evaluation, now: datetime) -> dict[str, Any]:
    state = evaluation.state
    status = state.decided_status or state.status
    present = status is Status.PRESENT
    return {
        "image": state.image,
        "recorded_at": state.last_decided or state.last_checked or now,
        "status": _value(status) or "",
        # A digest belongs to a history row only while the tag is present: TagState keeps
        # the last digest seen across a missing spell, the history must not repeat it.
        "digest": state.digest if present else None,
        "platforms": dict(state.platforms) if present else {},
        "event_id": evaluation.events[0].id if evaluation.events else None,
    }
