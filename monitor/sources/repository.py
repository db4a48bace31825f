"""A repository watch as a watch source: its targets are the tags its last listing selected.

The source is dynamic (``monitor.runtime.targets``): each complete listing
(``apply``) moves its selection on, and the runtime hands the new target set
to the store and the scheduler. Between listings, and across a reload that
keeps the repository (``carry_over``) or a restart (``seed``: the tags the
store holds for it), the selection stays what the last listing made it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final

from monitor.tags import SelectionChange, TagSelection, diff_selection, select_tags

if TYPE_CHECKING:
    from monitor.config import RepositoryWatch, Watch
    from monitor.sources.base import WatchSource

__all__ = ["PREFIX", "RepositorySource", "source_name"]

PREFIX: Final = "repository:"


def source_name(key: str) -> str:
    """The source name (stored with each of its watches) of the repository ``key``."""
    return f"{PREFIX}{key}"


class RepositorySource:
    """The selected tags of one ``repository:`` entry."""

    def __init__(self, watch: RepositoryWatch) -> None:
        self.watch = watch
        self.name = source_name(watch.key)
        self._selected: tuple[str, ...] | None = None  # None: never listed
        self._listed: frozenset[str] | None = None  # the last listing, when this process saw it
        # The same Watch objects until the selection changes: the API's index and the
        # metrics' label cache are kept by identity.
        self._targets: tuple[Watch, ...] | None = None

    @property
    def selected(self) -> tuple[str, ...]:
        return self._selected or ()

    @property
    def listed(self) -> bool:
        """Whether a listing (this process's, or one before a restart) is known."""
        return self._selected is not None

    def targets(self) -> Sequence[Watch]:
        if self._targets is None:
            self._targets = tuple(self.watch.tag_watch(tag, self.name) for tag in self.selected)
        return self._targets

    def carry_over(self, previous: WatchSource) -> None:
        if isinstance(previous, RepositorySource):
            self._select(previous._selected)
            self._listed = previous._listed

    def _select(self, selected: tuple[str, ...] | None) -> None:
        if selected != self._selected:
            self._targets = None
        self._selected = selected

    def seed(self, stored: Sequence[str]) -> None:
        prefix = f"{self.watch.key}:"
        tags = [key[len(prefix) :] for key in stored if key.startswith(prefix)]
        # No stored tag: a repository never listed, or one whose selection was empty.
        self._select(tuple(select_tags(tags, TagSelection())) if tags else None)

    def snapshot(self) -> tuple[tuple[str, ...] | None, frozenset[str] | None]:
        """What ``restore`` puts back: the selection and listing before an ``apply``."""
        return self._selected, self._listed

    def restore(self, snapshot: tuple[tuple[str, ...] | None, frozenset[str] | None]) -> None:
        self._select(snapshot[0])
        self._listed = snapshot[1]

    def apply(self, listed: Collection[str]) -> SelectionChange:
        """Take a complete listing in; what came and went (``monitor.tags.diff_selection``)."""
        change = diff_selection(self._selected, self._listed, listed, self.watch.selection)
        self._select(change.selected)
        self._listed = frozenset(listed)
        return change
