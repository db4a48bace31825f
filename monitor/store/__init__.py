"""Persistence: engine setup, migrations and the repository functions.

Everything the rest of regmon needs is re-exported here; the tables (``models``) stay an
implementation detail of the store (and of ``migrations/``).
"""

from monitor.store.engine import StoreError, check_schema, make_engine, upgrade
from monitor.store.repository import (
    HistoryRow,
    Record,
    Recorded,
    UnknownEventError,
    WatchLike,
    WatchRow,
    active_watches,
    get_state,
    history_for,
    list_events,
    load_states,
    load_versioned_states,
    prune,
    record_evaluations,
    sync_sources,
    sync_watches,
)

__all__ = [
    "HistoryRow",
    "Record",
    "Recorded",
    "StoreError",
    "UnknownEventError",
    "WatchLike",
    "WatchRow",
    "active_watches",
    "check_schema",
    "get_state",
    "history_for",
    "list_events",
    "load_states",
    "load_versioned_states",
    "make_engine",
    "prune",
    "record_evaluations",
    "sync_sources",
    "sync_watches",
    "upgrade",
]
