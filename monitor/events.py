"""Fold one check result into a tag's state and derive its events (SPEC §5).

Pure: no I/O, no clock. ``evaluate(previous, result)`` returns the new state,
the events it causes (in the order they happened) and whether a history row
is due; the store writes all three in one transaction, so feeding the stored
state back after a restart continues where the service left off and never
repeats an event (the ``*_alerted`` latches live in the state).

The webhook body of an event and the timestamps in it are ``monitor.wire``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from monitor.domain import CheckResult, Status
from monitor.ids import new_event_id
from monitor.records import Evaluation, Event, EventType, PlatformChange, TagState
from monitor.tags import announced_versions

__all__ = ["DELETED", "deleted", "diff_platforms", "evaluate"]

DELETED: Final = "deleted"  # the cause of a tag a repository listing no longer has


def evaluate(
    previous: TagState | None,
    result: CheckResult,
    *,
    missing_after: int,
    failing_after: int,
    created: bool = False,
    newer: Sequence[str] | None = None,
    new_id: Callable[[], str] = new_event_id,
    image: str | None = None,
) -> Evaluation:
    """Fold ``result`` into ``previous`` (``None`` for a new watch).

    ``created``: the tag has just appeared in its repository's listing (SPEC
    §9), so a ``present`` result is its ``tag.created``, whatever came before
    (a baseline, or the state it had before it was deleted).

    ``image``: the key of a new watch's first state (the watch's own string, so a
    tag's key is held once); ``str(result.reference)`` when not given.

    ``newer`` (``newer: semver``; None when not listed, or the listing failed):
    the tags that are higher versions of this one, lowest first
    (``monitor.tags.newer_versions``). Each one above the highest seen before
    is a ``version.available``, once; when none was seen before, only the
    highest is (a watch that starts behind hears of it once, not once per
    release it missed). ``newer_version`` keeps the highest, for the next
    listing and ``regmon_image_newer_version_info``.

    Rules (SPEC §5), with the choices SPEC leaves open:

    * The first check of a new watch (``previous`` is ``None`` or has never
      been checked) is the baseline: no event, except ``tag.missing`` when it
      is ``missing``/``denied`` and ``missing_after`` is 1. Misses and errors
      are counted from that first check, so with ``missing_after=2`` a new
      watch that is missing twice emits ``tag.missing`` on the second check,
      and with ``failing_after=1`` a first check in ``error`` emits
      ``check.failing``.
    * ``denied`` counts exactly like ``missing``; ``missing`` ↔ ``denied``
      emits nothing new (one ``tag.missing`` per disappearance) but is a
      history row.
    * ``error`` checks are transparent to the miss streak: they neither count
      as a miss nor reset ``consecutive_misses``; missing, error, missing is
      two consecutive misses. An error never emits ``tag.missing``.
    * ``tag.created`` is emitted when a tag never seen present (the first
      decided checks were ``missing``/``denied``) is present for the first
      time, whether or not ``tag.missing`` fired meanwhile.
    * ``tag.restored`` is emitted when a tag that had been present is present
      again after ``tag.missing``; a restore with a new digest is that one event
      (``same_digest=False``), not a ``tag.changed`` as well. A disappearance
      shorter than ``missing_after`` that comes back with the same digest is
      silent; with another digest it is a ``tag.changed``.
    * ``check.failing`` latches until the next decided check, which emits
      ``check.recovered`` first and is then processed as usual.
    * Thresholds are compared with ``>=`` behind the latches, so lowering
      ``missing_after``/``failing_after`` in a config reload fires at the next
      check instead of never.
    * ``digest_changes`` counts every change of the present digest: each
      ``tag.changed`` and each ``tag.restored`` with another digest.
    * ``last_changed`` moves on the first decided check, on present ↔
      missing/denied and on a digest change (not on missing ↔ denied).

    Event fields: ``current_*``, ``checked_at`` and ``occurred_at`` come from
    the result; ``reason`` is the result's reason or detail when it is not
    ``present``. ``previous_*`` is the previous decided status and the last
    present digest, except that ``tag.changed`` and ``tag.missing`` report
    what the tag was before: present with its last digest (or ``None`` for a
    tag never seen present), not the ``missing`` of a streak still counting.
    """
    if previous is not None:
        image = previous.image
    elif image is None:
        image = str(result.reference)
    prev = previous if previous is not None else TagState(image=image)
    events: list[Event] = []
    checked_at = result.checked_at
    reason = _result_reason(result)

    def emit(
        kind: EventType,
        *,
        previous_status: Status | None,
        previous_digest: str | None,
        platforms: Mapping[str, PlatformChange] | None = None,
        same_digest: bool | None = None,
    ) -> None:
        events.append(
            Event(
                id=new_id(),
                type=kind,
                occurred_at=checked_at,
                image=str(result.reference),
                previous_status=previous_status,
                previous_digest=previous_digest,
                current_status=result.status,
                current_digest=result.digest,
                checked_at=checked_at,
                platforms=dict(platforms or {}),
                reason=reason,
                same_digest=same_digest,
            )
        )

    if not result.status.decided:
        errors = prev.consecutive_errors + 1
        failing_alerted = prev.failing_alerted
        if not failing_alerted and errors >= failing_after:
            emit(
                EventType.CHECK_FAILING,
                previous_status=prev.decided_status,
                previous_digest=prev.digest,
            )
            failing_alerted = True
        state = replace(
            prev,
            status=result.status,
            reason=result.reason,
            detail=result.detail,
            last_checked=checked_at,
            consecutive_errors=errors,
            failing_alerted=failing_alerted,
        )
        return Evaluation(state=state, events=tuple(events), changed=False)

    if prev.failing_alerted:
        emit(
            EventType.CHECK_RECOVERED,
            previous_status=prev.decided_status,
            previous_digest=prev.digest,
        )

    first_decided = prev.decided_status is None
    status_changed = result.status is not prev.decided_status
    presence_changed = first_decided or (
        (result.status is Status.PRESENT) != (prev.decided_status is Status.PRESENT)
    )

    if result.status is Status.PRESENT:
        # A present result always has a digest (SPEC §2); None is treated as "unknown".
        digest = result.digest if result.digest is not None else prev.digest
        digest_changed = prev.digest is not None and digest != prev.digest
        platform_changes = diff_platforms(prev.platforms, result.platforms)
        platforms_changed = bool(result.platforms) and dict(result.platforms) != dict(
            prev.platforms
        )
        # A copy of its own only when they changed: a check without platforms, or with
        # the same ones, keeps the previous mapping (one per tag, not one per check).
        platforms = dict(result.platforms) if platforms_changed else prev.platforms
        missing_alerted = prev.missing_alerted
        if created or (not first_decided and prev.digest is None):
            # Never seen present before (an upcoming release tag): a first
            # appearance, whether or not tag.missing fired while it was awaited.
            emit(
                EventType.TAG_CREATED,
                previous_status=prev.decided_status,
                previous_digest=None,
            )
            missing_alerted = False
        elif missing_alerted:
            emit(
                EventType.TAG_RESTORED,
                previous_status=prev.decided_status,
                previous_digest=prev.digest,
                same_digest=None if prev.digest is None else not digest_changed,
            )
            missing_alerted = False
        elif digest_changed:
            emit(
                EventType.TAG_CHANGED,
                previous_status=Status.PRESENT,
                previous_digest=prev.digest,
                platforms=platform_changes,
            )
        state = replace(
            prev,
            status=result.status,
            decided_status=result.status,
            digest=digest,
            media_type=result.media_type if result.media_type is not None else prev.media_type,
            platforms=platforms,
            reason=result.reason,
            detail=result.detail,
            first_seen=prev.first_seen if prev.first_seen is not None else checked_at,
            last_checked=checked_at,
            last_decided=checked_at,
            last_changed=checked_at if presence_changed or digest_changed else prev.last_changed,
            consecutive_misses=0,
            consecutive_errors=0,
            missing_alerted=missing_alerted,
            failing_alerted=False,
            failing_covered=False,
            digest_changes=prev.digest_changes + (1 if digest_changed else 0),
        )
        if newer is not None:
            for version in announced_versions(prev.newer_version, newer):
                events.append(
                    Event(
                        id=new_id(),
                        type=EventType.VERSION_AVAILABLE,
                        occurred_at=checked_at,
                        image=str(result.reference),
                        previous_status=Status.PRESENT,
                        previous_digest=digest,
                        current_status=Status.PRESENT,
                        current_digest=digest,
                        checked_at=checked_at,
                        version=version,
                    )
                )
            state = replace(state, newer_version=newer[-1] if newer else None)
        changed = status_changed or digest_changed or platforms_changed
        return Evaluation(state=state, events=tuple(events), changed=changed)

    # missing / denied
    misses = prev.consecutive_misses + 1
    missing_alerted = prev.missing_alerted
    if not missing_alerted and misses >= missing_after:
        emit(
            EventType.TAG_MISSING,
            previous_status=None if prev.digest is None else Status.PRESENT,
            previous_digest=prev.digest,
        )
        missing_alerted = True
    state = replace(
        prev,
        status=result.status,
        decided_status=result.status,
        reason=result.reason,
        detail=result.detail,
        last_checked=checked_at,
        last_decided=checked_at,
        last_changed=checked_at if presence_changed else prev.last_changed,
        consecutive_misses=misses,
        consecutive_errors=0,
        missing_alerted=missing_alerted,
        failing_alerted=False,
        failing_covered=False,
    )
    return Evaluation(state=state, events=tuple(events), changed=status_changed)


def deleted(
    previous: TagState | None,
    image: str,
    at: datetime,
    *,
    new_id: Callable[[], str] = new_event_id,
) -> Evaluation:
    """A selected tag of a repository watch is no longer listed: ``tag.deleted``.

    The state becomes ``missing`` (cause ``deleted``) with a history row; the
    tag stops being watched, so no ``tag.missing`` follows.
    """
    prev = previous if previous is not None else TagState(image=image)
    event = Event(
        id=new_id(),
        type=EventType.TAG_DELETED,
        occurred_at=at,
        image=image,
        previous_status=prev.decided_status,
        previous_digest=prev.digest,
        current_status=Status.MISSING,
        checked_at=at,
        reason=DELETED,
    )
    state = replace(
        prev,
        status=Status.MISSING,
        decided_status=Status.MISSING,
        reason=None,
        detail=DELETED,
        last_checked=at,
        last_decided=at,
        last_changed=at if prev.decided_status is not Status.MISSING else prev.last_changed,
        consecutive_misses=prev.consecutive_misses + 1,
        consecutive_errors=0,
        missing_alerted=True,
        failing_alerted=False,
    )
    return Evaluation(state=state, events=(event,), changed=True)


def diff_platforms(
    previous: Mapping[str, str], current: Mapping[str, str]
) -> dict[str, PlatformChange]:
    """The platforms whose digest changed, appeared or vanished, sorted by name.

    Empty when either side has no platform digests: a check that did not
    resolve platforms (or a watch that just gained a ``platforms:`` list) says
    nothing about which platforms changed.
    """
    if not previous or not current:
        return {}
    return {
        name: PlatformChange(previous.get(name), current.get(name))
        for name in sorted(previous.keys() | current.keys())
        if previous.get(name) != current.get(name)
    }


def _result_reason(result: CheckResult) -> str | None:
    if result.status is Status.PRESENT:
        return None
    if result.reason is not None:
        return str(result.reason)
    return result.detail
