"""The service's cache of tag states: the store is the authority, this is a copy of it.

Each cached state has the version it will be stored with; an evaluation on
the cache moves the version on by one. When the store refuses a write because
its expected version is stale (another writer moved the tag on,
``monitor.store.states``), ``refresh`` takes the store's state and version in,
and the refused results are evaluated again on top of it.

With ``outages`` (``monitor.runtime.outages``), each evaluation also gets its
registry's part (registry events, covered per-tag events) before it is cached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from monitor.events import deleted, evaluate

if TYPE_CHECKING:
    from datetime import datetime

    from monitor.config import Watch
    from monitor.domain import CheckResult
    from monitor.records import Evaluation, TagState
    from monitor.runtime.outages import Outages

__all__ = ["StateCache"]


class StateCache:
    """Tag states by watch key, each with its version."""

    def __init__(
        self,
        stored: Mapping[str, tuple[TagState, int]] | None = None,
        outages: Outages | None = None,
    ) -> None:
        self._outages = outages
        self._states: dict[str, TagState] = {}
        self._versions: dict[str, int] = {}
        for key, (state, version) in (stored or {}).items():
            self._states[key] = state
            self._versions[key] = version

    def get(self, key: str) -> TagState | None:
        return self._states.get(key)

    def states(self) -> dict[str, TagState]:
        """A copy: scrapes and the API read it from worker threads."""
        return dict(self._states)

    def versions(self) -> dict[str, int]:
        return dict(self._versions)

    def load(self, stored: Mapping[str, tuple[TagState, int]], keys: Mapping[str, object]) -> None:
        """Take the store's states in, in place (every holder of this cache sees them), and
        keep those of ``keys``: a replica that takes the lead, or a follower's re-read."""
        self._states = {key: state for key, (state, _) in stored.items()}
        self._versions = {key: version for key, (_, version) in stored.items()}
        self.keep(keys)

    def keep(self, keys: Mapping[str, object]) -> None:
        """Forget the states of tags that are not watched (their versions stay known)."""
        self._states = {k: v for k, v in self._states.items() if k in keys}

    def evaluate(
        self,
        watch: Watch,
        result: CheckResult,
        *,
        created: bool = False,
        newer: Sequence[str] | None = None,
    ) -> tuple[Evaluation, int]:
        """Fold ``result`` into the cached state; the evaluation and its new version."""
        key = watch.key
        previous = self._states.get(key)
        evaluation = evaluate(
            previous,
            result,
            missing_after=watch.missing_after,
            failing_after=watch.failing_after,
            created=created,
            newer=newer,
            image=key,  # the watch's own key string, not another one per tag
        )
        if self._outages is not None:
            evaluation = self._outages.assess(watch, previous, evaluation, result)
        return evaluation, self._put(key, evaluation)

    def delete(self, key: str, at: datetime) -> tuple[Evaluation, int]:
        """A repository's tag is no longer listed (``monitor.events.deleted``)."""
        evaluation = deleted(self._states.get(key), key, at)
        return evaluation, self._put(key, evaluation)

    def _put(self, key: str, evaluation: Evaluation) -> int:
        version = self._versions.get(key, 0) + 1
        self._states[key] = evaluation.state
        self._versions[key] = version
        return version

    def refresh(self, key: str, stored: tuple[TagState, int] | None) -> None:
        """Take the store's state and version of ``key`` (None: never written) in."""
        if stored is None:
            self._states.pop(key, None)
            self._versions.pop(key, None)
        else:
            self._states[key], self._versions[key] = stored
        if self._outages is not None:
            self._outages.observe(key, self._states.get(key))
