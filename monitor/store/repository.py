"""The store's functions under one name: every read and write of regmon's state.

Each job lives in its own module (``watches``, ``state_rows``, ``registry_rows``,
``records``, ``queries``, ``retention``); this module keeps the names importable from
where callers have always imported them.
"""

from monitor.store.queries import HistoryRow, UnknownEventError, history_for, list_events
from monitor.store.records import Record, Recorded, record_evaluations
from monitor.store.registry_rows import load_registry_states
from monitor.store.retention import prune
from monitor.store.state_rows import get_state, load_states, load_versioned_states
from monitor.store.watches import WatchLike, WatchRow, active_watches, sync_sources, sync_watches

__all__ = [
    "HistoryRow",
    "Record",
    "Recorded",
    "UnknownEventError",
    "WatchLike",
    "WatchRow",
    "active_watches",
    "get_state",
    "history_for",
    "list_events",
    "load_registry_states",
    "load_states",
    "load_versioned_states",
    "prune",
    "record_evaluations",
    "sync_sources",
    "sync_watches",
]
