"""Routing: which channels get an event, and the body it is stored with.

Runs in the event loop before a batch goes to the store, so the store's write
path is a function of its arguments (rows, payloads, channel names) and never
calls back into the service from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from monitor.store.repository import Record
from monitor.wire import event_to_payload

if TYPE_CHECKING:
    from monitor.config import Config, Watch
    from monitor.domain import Evaluation, Event

__all__ = ["Router", "channels_for", "payload_for"]


def payload_for(event: Event, watch: Watch | None) -> dict[str, Any]:
    """The stored SPEC §6 body of ``event``, with the image parts of its watch."""
    return event_to_payload(event, reference=watch.image if watch else None)


def channels_for(event: Event, watch: Watch | None, config: Config) -> list[str]:
    """The webhooks (by name, in config order) that ``watch`` names and that take ``event``."""
    if watch is None:
        return []
    allowed = set(watch.webhooks)
    return [
        hook.name
        for hook in config.webhooks
        if hook.name in allowed and str(event.type) in hook.events
    ]


class Router:
    """Prepares an evaluation for the store against the config in force (replaced on reload)."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config

    def prepare(self, evaluation: Evaluation, watch: Watch | None) -> Record:
        config = self._config()
        events: Sequence[Event] = evaluation.events
        return Record(
            evaluation,
            payloads=tuple(payload_for(event, watch) for event in events),
            channels=tuple(tuple(channels_for(event, watch, config)) for event in events),
        )
