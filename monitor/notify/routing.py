"""Routing: which channels get an event, and the body it is stored with.

Runs in the event loop before a batch goes to the store, so the store's write
path is a function of its arguments (rows, payloads, channel names) and never
calls back into the service from a worker thread.

A ``registry.*`` event goes to the webhooks of every watch of its registry
(the outage concerns them all), not only to the watch whose check caused it.
A per-tag event that a registry event covers (``Evaluation.covered``,
``monitor.outage``) is not sent to a webhook that takes the covering registry
event type: that webhook hears of the outage once. A webhook that does not
take it still gets the per-tag events, so filtering ``events:`` never hides an
outage.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from monitor.outage import COVERED_BY
from monitor.records import EventType
from monitor.store.repository import Record
from monitor.wire import event_to_payload

if TYPE_CHECKING:
    from monitor.config import Config, Watch
    from monitor.records import Evaluation, Event

__all__ = ["Router", "channels_for", "payload_for"]


def payload_for(event: Event, watch: Watch | None) -> dict[str, Any]:
    """The stored SPEC §6 body of ``event``, with the image parts of its watch."""
    return event_to_payload(event, reference=watch.image if watch else None)


def channels_for(
    event: Event,
    watch: Watch | None,
    config: Config,
    *,
    audience: Collection[str] = (),
    covered: bool = False,
) -> list[str]:
    """The webhooks (by name, in config order) that ``watch`` names and that take ``event``.

    ``audience``: for a registry event, the webhooks that the registry's watches
    name (``watch``'s are among them). ``covered``: a registry event covers
    ``event``; webhooks that take the covering type are left out.
    """
    if watch is None:
        return []
    allowed = set(watch.webhooks) | set(audience)
    cover = COVERED_BY.get(event.type) if covered else None
    return [
        hook.name
        for hook in config.webhooks
        if hook.name in allowed
        and str(event.type) in hook.events
        and (cover is None or str(cover) not in hook.events)
    ]


_REGISTRY_EVENTS = frozenset({EventType.REGISTRY_FAILING, EventType.REGISTRY_RECOVERED})


class Router:
    """Prepares an evaluation for the store against the config in force (replaced on reload).

    ``registry_webhooks(name)`` names the webhooks of the watches of one
    registry (the audience of its ``registry.*`` events).
    """

    def __init__(
        self,
        config: Callable[[], Config],
        registry_webhooks: Callable[[str], Collection[str]] | None = None,
    ) -> None:
        self._config = config
        self._registry_webhooks = registry_webhooks

    def prepare(self, evaluation: Evaluation, watch: Watch | None) -> Record:
        config = self._config()
        events: Sequence[Event] = evaluation.events
        return Record(
            evaluation,
            payloads=tuple(payload_for(event, watch) for event in events),
            channels=tuple(
                tuple(
                    channels_for(
                        event,
                        watch,
                        config,
                        audience=self._audience(event),
                        covered=event.id in evaluation.covered,
                    )
                )
                for event in events
            ),
        )

    def _audience(self, event: Event) -> Collection[str]:
        if event.type not in _REGISTRY_EVENTS or event.registry is None:
            return ()
        if self._registry_webhooks is None:
            return ()
        return self._registry_webhooks(event.registry.name)
