"""The Notifier seam: one delivery in, one outcome out, whatever the channel.

A ``Delivery`` is what the outbox hands a channel: one event, or the events
of one batch window (``batch:``, SPEC §6), oldest first, under one id. A
``Notifier`` sends it and answers with an ``Outcome``:

    DELIVERED   the receiver took it
    RETRY       it may work later (no answer, timeout, 5xx, 408, 429, 3xx, or a
                failure the channel cannot explain); ``retry_after`` is the
                least wait the receiver asked for, if any
    FAILED      final: retrying the same delivery cannot help (another 4xx)

A notifier never raises for a failed send and never decides ``dead``: giving
up after ``max_retry_age`` and the backoff between tries belong to the
dispatcher, the same for every channel. ``Outcome.error`` is one line naming
the target by its redacted form; it is stored, logged and shown by the API,
so it never holds a credential.

The delivery id is the ``webhook-id`` (receivers de-duplicate on it): the
event id for one event, ``batch_id()`` for several.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from monitor.notify.sender import DeliveryError

__all__ = ["Delivery", "Notifier", "Outcome", "Verdict", "batch_id"]


class Verdict(enum.StrEnum):
    """What one attempt means for the delivery (also the metrics' ``outcome`` label)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


def batch_id(event_ids: Sequence[str]) -> str:
    """The id of a batch of ``event_ids`` (in order): ``batch_<first id>_<fingerprint>``.

    Derived from the members, not drawn: the same events always get the same id
    (a retry, or a batch formed again from the same events after a crash, is
    de-duplicated by the receiver), and a different list never does, so no
    event is dropped as a "duplicate" of a batch it was not in. It names the
    batch's first event (sortable by time, like event ids) and is never equal
    to an event id.
    """
    if not event_ids:
        raise ValueError("a batch has at least one event")
    fingerprint = hashlib.sha256("\n".join(event_ids).encode("utf-8")).hexdigest()[:16]
    return f"batch_{event_ids[0]}_{fingerprint}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One send: ``events`` (SPEC §6 bodies, oldest first) under ``id``, attempted at
    ``attempted_at`` (the time a webhook signature carries)."""

    id: str
    events: tuple[Mapping[str, Any], ...]
    attempted_at: datetime

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("a delivery carries at least one event")
        if self.attempted_at.tzinfo is None:
            raise ValueError("attempted_at must be timezone-aware")

    @classmethod
    def of(cls, events: Sequence[Mapping[str, Any]], attempted_at: datetime) -> Delivery:
        """One event under its own id; several under their ``batch_id``.

        A batch window in which only one event arrived is sent as that event,
        exactly as without ``batch:``: receivers of a batching webhook read both
        shapes (``type`` tells them apart).
        """
        members = tuple(events)
        ids = [str(event.get("id", "")) for event in members]
        return cls(ids[0] if len(ids) == 1 else batch_id(ids), members, attempted_at)

    @property
    def is_batch(self) -> bool:
        return len(self.events) > 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt; ``error`` is ``None`` exactly when delivered."""

    verdict: Verdict
    error: str | None = None
    retry_after: float | None = None
    status_code: int | None = None
    latency_ms: float | None = None

    @classmethod
    def delivered(
        cls, *, status_code: int | None = None, latency_ms: float | None = None
    ) -> Outcome:
        return cls(Verdict.DELIVERED, status_code=status_code, latency_ms=latency_ms)

    @classmethod
    def retry(
        cls,
        error: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        latency_ms: float | None = None,
    ) -> Outcome:
        return cls(Verdict.RETRY, _one_line(error), retry_after, status_code, latency_ms)

    @classmethod
    def failed(
        cls, error: str, *, status_code: int | None = None, latency_ms: float | None = None
    ) -> Outcome:
        return cls(Verdict.FAILED, _one_line(error), None, status_code, latency_ms)

    @classmethod
    def from_error(cls, exc: DeliveryError) -> Outcome:
        """The outcome the HTTP sender's ``DeliveryError`` stands for (its text is already
        credential-free)."""
        if exc.permanent:
            return cls.failed(str(exc), status_code=exc.status_code, latency_ms=exc.latency_ms)
        return cls.retry(
            str(exc),
            retry_after=exc.retry_after,
            status_code=exc.status_code,
            latency_ms=exc.latency_ms,
        )

    @property
    def permanent(self) -> bool:
        return self.verdict is Verdict.FAILED


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed (no detail)"


class Notifier(Protocol):
    """One configured channel (a webhook URL, an Apprise URL)."""

    @property
    def target(self) -> str:
        """The channel's address with every secret masked: safe for logs, metrics, API."""
        ...

    async def send(self, delivery: Delivery) -> Outcome:
        """Attempt ``delivery`` once, within the channel's timeout; never raises for a
        failed send (a bug may still raise: the dispatcher retries those)."""
        ...

    async def aclose(self) -> None:
        """Release what the notifier holds (threads, connections)."""
        ...
