"""Tag states as rows: TagState to and from ``tag_states``, and the reads of them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Engine, Row, select

from monitor.domain import Reason, Status
from monitor.records import NO_PLATFORMS, TagState
from monitor.store.models import tag_states as _TAG_STATES
from monitor.store.transactions import _translated

__all__ = ["get_state", "load_states", "load_versioned_states"]


_STATE_COLUMNS = [c.name for c in _TAG_STATES.columns if c.name != "image"]


def _state_to_row(state: TagState, version: int) -> dict[str, Any]:
    return {
        "image": state.image,
        "status": _value(state.status),
        "decided_status": _value(state.decided_status),
        "digest": state.digest,
        "media_type": state.media_type,
        "platforms": dict(state.platforms),
        "reason": _value(state.reason),
        "detail": state.detail,
        "first_seen": state.first_seen,
        "last_checked": state.last_checked,
        "last_decided": state.last_decided,
        "last_changed": state.last_changed,
        "consecutive_misses": state.consecutive_misses,
        "consecutive_errors": state.consecutive_errors,
        "missing_alerted": state.missing_alerted,
        "failing_alerted": state.failing_alerted,
        "digest_changes": state.digest_changes,
        "newer_version": state.newer_version,
        "version": version,
        "failing_covered": state.failing_covered,
    }


def _row_to_state(row: Row[Any]) -> TagState:
    return TagState(
        image=row.image,
        status=Status(row.status) if row.status is not None else None,
        decided_status=Status(row.decided_status) if row.decided_status is not None else None,
        digest=row.digest,
        media_type=row.media_type,
        platforms=dict(row.platforms) if row.platforms else NO_PLATFORMS,
        reason=Reason(row.reason) if row.reason is not None else None,
        detail=row.detail,
        first_seen=row.first_seen,
        last_checked=row.last_checked,
        last_decided=row.last_decided,
        last_changed=row.last_changed,
        consecutive_misses=row.consecutive_misses,
        consecutive_errors=row.consecutive_errors,
        missing_alerted=row.missing_alerted,
        failing_alerted=row.failing_alerted,
        digest_changes=row.digest_changes,
        newer_version=row.newer_version,
        failing_covered=row.failing_covered,
    )


def _value(member: Status | Reason | None) -> str | None:
    return None if member is None else member.value


@_translated
def load_states(engine: Engine) -> dict[str, TagState]:
    """Every stored TagState, by image."""
    with engine.connect() as conn:
        return {row.image: _row_to_state(row) for row in conn.execute(select(_TAG_STATES))}


@_translated
def load_versioned_states(
    engine: Engine, images: Collection[str] | None = None
) -> dict[str, tuple[TagState, int]]:
    """Stored TagStates with their versions, by image (all, or those of ``images``)."""
    with engine.connect() as conn:
        return _versioned(conn, images)


def _versioned(conn: Connection, images: Collection[str] | None) -> dict[str, tuple[TagState, int]]:
    query = select(_TAG_STATES)
    if images is not None:
        query = query.where(_TAG_STATES.c.image.in_(sorted(set(images))))
    return {row.image: (_row_to_state(row), row.version) for row in conn.execute(query)}


@_translated
def get_state(engine: Engine, image: str) -> TagState | None:
    with engine.connect() as conn:
        row = conn.execute(select(_TAG_STATES).where(_TAG_STATES.c.image == image)).one_or_none()
        return None if row is None else _row_to_state(row)
