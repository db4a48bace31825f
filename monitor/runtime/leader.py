"""The coordinator port: whether this process may check, record and deliver now.

One small protocol with today's one implementation: a single process is
always the leader, at epoch 0. A PostgreSQL lease (issue 14) implements the
same port: ``is_leader()`` turns false before its lease can expire, and
``epoch`` is the fencing token its writes carry.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Coordinator", "SingleProcess"]


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
