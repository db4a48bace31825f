"""The coordinator port: whether this process may check, record and deliver now.

One small protocol with today's one implementation: a single process is
always the leader, at epoch 0. A PostgreSQL lease (issue 14) implements the
same port: ``is_leader()`` turns false before its lease can expire, and
``epoch`` is the fencing token its writes carry.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Coordinator", "LoadedLead", "SingleProcess"]


class Coordinator(Protocol):
    def is_leader(self) -> bool:
        """True while this process holds the lead (checks, state writes, deliveries)."""
        ...

    @property
    def epoch(self) -> int:
        """The lease epoch this process leads under; grows with each new leader."""
        ...


class SingleProcess:
    """One process on its database: always the leader, at epoch 0."""

    def is_leader(self) -> bool:
        return True

    @property
    def epoch(self) -> int:
        return 0


class LoadedLead:
    """A coordinator's lead, counted only once the store's state of its epoch is loaded.

    A replica that takes over must first load what the store holds (the previous
    leader wrote it); until ``loaded(epoch)`` says so for the epoch it leads under,
    it neither checks, records nor delivers.
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._loaded: int | None = None

    def lead_by(self, coordinator: Coordinator) -> None:
        """Follow ``coordinator`` from now on (chosen once the database is known)."""
        self._coordinator = coordinator
        self._loaded = None

    def loaded(self, epoch: int) -> None:
        self._loaded = epoch

    def is_leader(self) -> bool:
        return self._coordinator.is_leader() and self._coordinator.epoch == self._loaded

    @property
    def epoch(self) -> int:
        return self._coordinator.epoch
