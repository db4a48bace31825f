"""Registry states as rows: RegistryState to and from ``registry_states`` (``monitor.outage``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from monitor.records import RegistryState
from monitor.store.models import registry_states as _REGISTRY_STATES
from monitor.store.transactions import _translated, _upsert

__all__ = ["load_registry_states", "write_registry_states"]

_COLUMNS = [c.name for c in _REGISTRY_STATES.columns if c.name != "registry"]


def write_registry_states(conn: Connection, states: Sequence[RegistryState], now: datetime) -> None:
    """Upsert ``states`` (the last one of a registry wins), in the caller's transaction."""
    rows: dict[str, Mapping[str, Any]] = {
        state.name: {
            "registry": state.name,
            "failing": state.failing,
            "since": state.since,
            "updated_at": now,
        }
        for state in states
    }
    _upsert(conn, _REGISTRY_STATES, list(rows.values()), "registry", _COLUMNS)


@_translated
def load_registry_states(engine: Engine) -> dict[str, RegistryState]:
    """Every stored RegistryState (registries that have had an outage), by name."""
    with engine.connect() as conn:
        return {
            row.registry: RegistryState(row.registry, failing=row.failing, since=row.since)
            for row in conn.execute(select(_REGISTRY_STATES))
        }
