"""A ServiceView for API and metrics tests: a config, a real store (``engine``), states."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from monitor.config import Config, Watch, resolve_watches
from monitor.records import RepositoryState, TagState


@dataclass
class FakeView:
    config: Config
    engine: Engine
    state_map: dict[str, TagState] = field(default_factory=dict)
    ready: bool = True
    leader: bool = True
    checked: list[str] = field(default_factory=list)
    # What a "check now" turns the state into; None leaves it as it is.
    on_check: Callable[[TagState], TagState] | None = None
    repository_list: list[RepositoryState] = field(default_factory=list)

    def watches(self) -> Sequence[Watch]:
        return resolve_watches(self.config)

    def states(self) -> Mapping[str, TagState]:
        return self.state_map

    def repositories(self) -> Sequence[RepositoryState]:
        return self.repository_list

    def is_ready(self) -> bool:
        return self.ready

    def is_leader(self) -> bool:
        return self.leader

    async def check_now(self, key: str) -> TagState:
        self.checked.append(key)
        if key not in {watch.key for watch in self.watches()}:
            raise KeyError(key)
        state = self.state_map.get(key, TagState(image=key))
        if self.on_check is not None:
            state = self.state_map[key] = self.on_check(state)
        return state
