"""What the HTTP API and the metrics read from the running service.

``monitor.service.Service`` implements it; tests pass a small fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Config, Watch
    from monitor.records import RepositoryState, TagState

__all__ = ["ServiceView"]


class ServiceView(Protocol):
    @property
    def config(self) -> Config:
        """The config in force (replaced on reload)."""
        ...

    @property
    def engine(self) -> Engine:
        """The store's engine; use monitor.store.repository functions via asyncio.to_thread."""
        ...

    def watches(self) -> Sequence[Watch]:
        """Every watch of the config in force, in config order."""
        ...

    def states(self) -> Mapping[str, TagState]:
        """Current state by watch key (``Watch.key``, the normalized reference)."""
        ...

    def repositories(self) -> Sequence[RepositoryState]:
        """Every repository watch with its selected tags and its last listing, in config order."""
        ...

    def is_leader(self) -> bool:
        """Whether this replica leads (checks, records, delivers); always, on SQLite."""
        ...

    def is_ready(self) -> bool:
        """Database reachable and scheduler running."""
        ...

    async def check_now(self, key: str) -> TagState:
        """Check one watched tag now and record it; KeyError if ``key`` is not watched."""
        ...
