"""Registry outages as the service sees them: tallies and states (rules: ``monitor.outage``).

Each watched tag's last check counts in its registry's tally; the tallies are
kept incrementally (a check moves one tag's part), so judging a registry after
each check costs the same for 5 tags as for 100,000. The registry states come
from the store at start and go back to it inside the evaluations that change
them (``Evaluation.registry``), in the same transaction as their events.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from monitor.outage import Tally, assess, tally_of
from monitor.records import RegistryState
from monitor.reference import canonical_registry

if TYPE_CHECKING:
    from monitor.config import Watch
    from monitor.domain import CheckResult
    from monitor.metrics import Metrics
    from monitor.records import Evaluation, TagState

__all__ = ["Outages", "registry_of"]


def registry_of(watch: Watch) -> str:
    """The registry a watch belongs to, named as in metrics labels and registry events."""
    # Interned: kept per watch (``Outages``), one name for all the watches of a registry.
    return sys.intern(canonical_registry(watch.image.api_host))


class Outages:
    """Tallies by registry over the watched tags, and each registry's state."""

    def __init__(
        self, stored: Mapping[str, RegistryState] | None = None, metrics: Metrics | None = None
    ) -> None:
        self._states: dict[str, RegistryState] = dict(stored or {})
        self._metrics = metrics
        self._parts: dict[str, tuple[str, Tally]] = {}  # watch key -> (registry, its part)
        self._tallies: dict[str, Tally] = {}
        self._webhooks: dict[str, tuple[str, ...]] = {}

    def watch(self, watches: Mapping[str, Watch], states: Mapping[str, TagState]) -> None:
        """Count the watches in force (at start and after each reload) from their states."""
        parts: dict[str, tuple[str, Tally]] = {}
        # (registry, part) -> watches: parts are a few shared values, so each registry's
        # tally is a handful of sums, not one new Tally per watch (50,000 at a start).
        counts: dict[tuple[str, Tally], int] = {}
        webhooks: dict[str, dict[str, None]] = {}
        by_domain: dict[str, str] = {}  # image domain -> registry name (one per domain)
        for key, watch in watches.items():
            domain = watch.image.domain
            name = by_domain.get(domain)
            if name is None:
                name = by_domain[domain] = registry_of(watch)
            pair = parts[key] = (name, tally_of(states.get(key)))
            counts[pair] = counts.get(pair, 0) + 1
            webhooks.setdefault(name, {}).update(dict.fromkeys(watch.webhooks))
        tallies: dict[str, Tally] = {}
        for (name, part), count in counts.items():
            tallies[name] = tallies.get(name, Tally()) + part.times(count)
        self._parts, self._tallies = parts, tallies
        self._webhooks = {name: tuple(names) for name, names in webhooks.items()}
        if self._metrics is not None:
            self._metrics.observe_registries(
                {name: self.is_failing(name) for name in self._webhooks}, replace=True
            )

    def load(self, stored: Mapping[str, RegistryState]) -> None:
        """Take the store's registry states (a replica taking the lead another one held)."""
        self._states = dict(stored)

    def is_failing(self, name: str) -> bool:
        state = self._states.get(name)
        return state is not None and state.failing

    def webhooks(self, name: str) -> tuple[str, ...]:
        """The webhooks that the watches of registry ``name`` name (config order of watches)."""
        return self._webhooks.get(name, ())

    def assess(
        self,
        watch: Watch,
        previous: TagState | None,
        evaluation: Evaluation,
        result: CheckResult,
    ) -> Evaluation:
        """``evaluation`` of ``watch`` with its registry's part (``monitor.outage.assess``)."""
        name = registry_of(watch)
        self.observe(watch.key, evaluation.state, name)
        registry = self._states.get(name) or RegistryState(name)
        assessed = assess(registry, self._tallies[name], previous, evaluation, result)
        if assessed.registry is not None:
            self._states[name] = assessed.registry
            if self._metrics is not None:
                self._metrics.observe_registries({name: assessed.registry.failing})
        return assessed

    def observe(self, key: str, state: TagState | None, name: str | None = None) -> None:
        """Count ``state`` as the last check of ``key`` (also after the store's state replaced
        the cached one); a key of no known registry is ignored without ``name``."""
        known = self._parts.get(key)
        if known is not None:
            old_name, part = known
            self._tallies[old_name] = self._tallies[old_name] - part
            name = name or old_name
        if name is not None:
            self._add(key, name, tally_of(state))

    def _add(self, key: str, name: str, part: Tally) -> None:
        self._parts[key] = (name, part)
        self._tallies[name] = self._tallies.get(name, Tally()) + part
