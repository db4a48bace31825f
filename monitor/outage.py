"""Registry outages: ``registry.failing`` / ``registry.recovered`` (SPEC §5), pure.

A registry is *in outage* when, over the last cycle, most checks of its
watched tags ended in ``error``: the last check of each of its watched tags
counts once (that is the window: one cycle of every tag), and at least
``MIN_TAGS`` of them must have been checked, ``ERROR_SHARE`` or more of those in
``error``. Why these numbers (docs/events.md): three distinct tags erroring
together is an outage rather than one flaky tag, and 80 % leaves room for a tag
that is still answered (a cache, a mirror) while the rest fail; below three
tags the per-tag events are at most two per outage anyway.

Transitions, judged after each check of one of the registry's tags, with that
check's evaluation folded in:

* ``registry.failing`` when the check ended in ``error``, the registry is in
  outage, and one of its tags has reached ``failing_after`` (its
  ``check.failing`` is latched): the registry event comes no later than the
  first per-tag ``check.failing`` it is meant to replace, and no earlier, so it
  has the same debounce as a per-tag one.
* ``registry.recovered`` when the check was decided (the registry answers
  again) and the registry is no longer in outage; with five tags that is the
  second tag that answers (four of five in ``error`` is still 80 %).

While a registry is failing, each per-tag ``check.failing`` is *covered*
(``Evaluation.covered``; the tag remembers it in ``failing_covered``), and so
is every ``check.recovered`` of a tag whose ``check.failing`` was covered or
that recovers while the registry is failing. Covered events are recorded
(history, events, API) but not sent to the webhooks that take the registry
event; routing decides that per webhook.

A tag whose ``check.failing`` was covered and that still fails after its
registry recovered has a problem of its own: its first check that *began*
after the recovery and ends in ``error`` emits a new ``check.failing``, not
covered (a check already running when the registry came back proves nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from monitor.domain import CheckResult, Status
from monitor.ids import new_event_id
from monitor.records import Evaluation, Event, EventType, RegistryState, RegistrySummary, TagState

__all__ = ["COVERED_BY", "ERROR_SHARE", "MIN_TAGS", "Tally", "assess", "tally_of"]

MIN_TAGS: Final = 3  # distinct checked tags before a registry can be in outage
ERROR_SHARE: Final = (4, 5)  # errors / checked at least this (80 %), as integers

# Which registry event covers which per-tag event (routing drops the covered one
# for a webhook that takes the covering type).
COVERED_BY: Final = {
    EventType.CHECK_FAILING: EventType.REGISTRY_FAILING,
    EventType.CHECK_RECOVERED: EventType.REGISTRY_RECOVERED,
}


@dataclass(frozen=True, slots=True)
class Tally:
    """The last checks of one registry's watched tags: how many, in ``error``, latched."""

    checked: int = 0  # watched tags with at least one check
    errors: int = 0  # of them, whose last check ended in error
    alerted: int = 0  # of them, with check.failing latched (failing_after reached)

    @property
    def outage(self) -> bool:
        share, whole = ERROR_SHARE
        return self.checked >= MIN_TAGS and self.errors * whole >= self.checked * share

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.checked + other.checked, self.errors + other.errors, self.alerted + other.alerted
        )

    def times(self, count: int) -> Tally:
        """The tally of ``count`` tags with this part each."""
        return Tally(self.checked * count, self.errors * count, self.alerted * count)

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.checked - other.checked, self.errors - other.errors, self.alerted - other.alerted
        )


# Every value a tag's part can take, shared: a part is kept per watch (``Outages``).
_TALLIES: Final = (
    (Tally(), Tally()),
    (Tally(1, 0, 0), Tally(1, 0, 1)),
    (Tally(1, 1, 0), Tally(1, 1, 1)),
)


def tally_of(state: TagState | None) -> Tally:
    """One tag's part in its registry's tally."""
    if state is None or state.status is None:
        return _TALLIES[0][0]
    return _TALLIES[1 + int(state.status is Status.ERROR)][int(state.failing_alerted)]


def assess(
    registry: RegistryState,
    tally: Tally,
    previous: TagState | None,
    evaluation: Evaluation,
    result: CheckResult,
    *,
    new_id: Callable[[], str] = new_event_id,
) -> Evaluation:
    """``evaluation`` (of ``result``, on ``previous``) with its registry's part added.

    ``tally`` already counts the evaluated state. A registry event comes first
    in the events; ``Evaluation.registry`` is the registry's new state when it
    changed, else None.
    """
    failing = registry.failing
    changed: RegistryState | None = None
    lead: list[Event] = []
    if not failing and not result.status.decided and tally.outage and tally.alerted > 0:
        changed = RegistryState(registry.name, failing=True, since=result.checked_at)
        lead.append(
            _registry_event(EventType.REGISTRY_FAILING, registry.name, tally, result, new_id)
        )
    elif failing and result.status.decided and not tally.outage:
        changed = RegistryState(registry.name, failing=False, since=result.checked_at)
        lead.append(
            _registry_event(EventType.REGISTRY_RECOVERED, registry.name, tally, result, new_id)
        )
    failing_now = changed.failing if changed is not None else failing
    covered: set[str] = set()
    state = evaluation.state
    for event in evaluation.events:
        if event.type is EventType.CHECK_FAILING and failing_now:
            covered.add(event.id)
            state = replace(state, failing_covered=True)
        elif event.type is EventType.CHECK_RECOVERED and (
            failing or (previous is not None and previous.failing_covered)
        ):
            covered.add(event.id)
    tail: list[Event] = []
    if (
        not failing_now
        and state.failing_covered
        and not result.status.decided
        and registry.since is not None
        and _began(result) >= registry.since
    ):
        tail.append(_still_failing(previous, result, new_id))
        state = replace(state, failing_covered=False)
    if not lead and not covered and not tail:
        return evaluation
    return replace(
        evaluation,
        state=state,
        events=(*lead, *evaluation.events, *tail),
        registry=changed,
        covered=frozenset(covered),
    )


def _began(result: CheckResult) -> datetime:
    return result.checked_at - timedelta(milliseconds=max(result.duration_ms, 0.0))


def _still_failing(
    previous: TagState | None, result: CheckResult, new_id: Callable[[], str]
) -> Event:
    """The ``check.failing`` of a tag that its registry's outage covered and that fails on."""
    return Event(
        id=new_id(),
        type=EventType.CHECK_FAILING,
        occurred_at=result.checked_at,
        image=str(result.reference),
        previous_status=previous.decided_status if previous is not None else None,
        previous_digest=previous.digest if previous is not None else None,
        current_status=result.status,
        current_digest=result.digest,
        checked_at=result.checked_at,
        reason=_reason(result),
    )


def _registry_event(
    kind: EventType,
    name: str,
    tally: Tally,
    result: CheckResult,
    new_id: Callable[[], str],
) -> Event:
    return Event(
        id=new_id(),
        type=kind,
        occurred_at=result.checked_at,
        image=str(result.reference),
        current_status=result.status,
        current_digest=result.digest,
        checked_at=result.checked_at,
        reason=_reason(result),
        registry=RegistrySummary(name, tally.checked, tally.errors),
    )


def _reason(result: CheckResult) -> str | None:
    if result.status.decided:
        return None
    return str(result.reason) if result.reason is not None else result.detail
