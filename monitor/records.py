"""What the service keeps and sends: tag, repository and registry state, events, and
the outbox's delivery statuses. Pure value objects, as ``monitor.domain``, which names
them too: ``from monitor.domain import TagState`` is the same class.

Apart from ``monitor.domain`` so that ``regmon check``, which uses none of them, does
not build them: creating these dataclasses and enums is ~40 M instructions, 7 % of a
check of one reference (bench/README.md, "One check").
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from monitor.domain import Reason, Status

__all__ = [
    "NO_PLATFORMS",
    "DeliveryStatus",
    "Evaluation",
    "Event",
    "EventType",
    "PlatformChange",
    "RegistryState",
    "RegistrySummary",
    "RepositoryState",
    "TagState",
]


class DeliveryStatus(enum.StrEnum):
    """Where one outbox delivery stands (SPEC §6); the outbox, the API and metrics use it.

    ``pending`` and ``sending`` are *waiting*: they hold later events of the same
    tag back. The other three are final.
    """

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEAD = "dead"
    FAILED = "failed"

    @classmethod
    def waiting(cls) -> tuple[DeliveryStatus, ...]:
        return (cls.PENDING, cls.SENDING)


class EventType(enum.StrEnum):
    """The one list of event types (SPEC §5): config, API filters and formats derive from it."""

    TAG_CHANGED = "tag.changed"
    TAG_MISSING = "tag.missing"
    TAG_RESTORED = "tag.restored"
    TAG_CREATED = "tag.created"
    TAG_DELETED = "tag.deleted"
    VERSION_AVAILABLE = "version.available"
    CHECK_FAILING = "check.failing"
    CHECK_RECOVERED = "check.recovered"
    REGISTRY_FAILING = "registry.failing"
    REGISTRY_RECOVERED = "registry.recovered"
    TEST = "test"

    @classmethod
    def subscribable(cls) -> tuple[EventType, ...]:
        """What a webhook's ``events:`` may name: every type but the ``test`` delivery."""
        return tuple(kind for kind in cls if kind is not cls.TEST)


@dataclass(frozen=True, slots=True)
class PlatformChange:
    previous: str | None
    current: str | None


class _NoPlatforms(Mapping[str, str]):
    """The platforms of a state that has none (most): one shared, read-only, empty
    mapping rather than an empty dict per watched tag. Copies and pickles are itself."""

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __copy__(self) -> _NoPlatforms:
        return self

    def __deepcopy__(self, memo: object) -> _NoPlatforms:
        return self

    def __reduce__(self) -> str:
        return "NO_PLATFORMS"


NO_PLATFORMS: Final[Mapping[str, str]] = _NoPlatforms()


@dataclass(frozen=True, slots=True)
class TagState:
    """What the service remembers about one watched tag.

    ``status`` is the status of the last check (``error`` included);
    ``decided_status`` is the last status that was not ``error`` and drives
    ``regmon_image_available``. ``digest``/``platforms`` are the last digests
    seen while present. ``missing_alerted`` is true between ``tag.missing`` and
    ``tag.restored``; ``failing_alerted`` between ``check.failing`` and
    ``check.recovered``. ``failing_covered`` is true when that ``check.failing``
    was covered by a ``registry.failing`` (``monitor.outage``): its
    ``check.recovered`` is covered too.
    """

    image: str
    status: Status | None = None
    decided_status: Status | None = None
    digest: str | None = None
    media_type: str | None = None
    platforms: Mapping[str, str] = field(default_factory=lambda: NO_PLATFORMS)
    reason: Reason | None = None
    detail: str | None = None
    first_seen: datetime | None = None
    last_checked: datetime | None = None
    last_decided: datetime | None = None
    last_changed: datetime | None = None
    consecutive_misses: int = 0
    consecutive_errors: int = 0
    missing_alerted: bool = False
    failing_alerted: bool = False
    digest_changes: int = 0
    # ``newer: semver``: the highest higher version the last listing had (None: none).
    newer_version: str | None = None
    failing_covered: bool = False


@dataclass(frozen=True, slots=True)
class RepositoryState:
    """A repository watch as the API, the status page and the metrics show it (SPEC §9).

    ``tags`` are the references of its selected tags, ascending; ``status`` is
    what its last listing found (None before the first), ``listed`` how many
    tags that listing had.
    """

    key: str
    tags: tuple[str, ...] = ()
    status: Status | None = None
    reason: Reason | None = None
    detail: str | None = None
    listed_at: datetime | None = None
    listed: int = 0


@dataclass(frozen=True, slots=True)
class RegistrySummary:
    """What a ``registry.*`` event says about its registry: of the watched tags that have
    been checked (``tags``), how many ended their last check in ``error``."""

    name: str
    tags: int
    errors: int


@dataclass(frozen=True, slots=True)
class RegistryState:
    """What the service remembers about one registry (``monitor.outage``).

    ``failing`` is true between ``registry.failing`` and ``registry.recovered``;
    ``since`` is when the last of the two happened (None: never failed).
    """

    name: str
    failing: bool = False
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One event, in the shape of the webhook ``json`` body (SPEC §6).

    A ``registry.*`` event is about the check that changed its registry's
    state: ``image`` and the statuses are that check's, ``registry`` says about
    the registry as a whole.
    """

    id: str
    type: EventType
    occurred_at: datetime
    image: str
    previous_status: Status | None = None
    previous_digest: str | None = None
    current_status: Status | None = None
    current_digest: str | None = None
    checked_at: datetime | None = None
    platforms: Mapping[str, PlatformChange] = field(default_factory=dict)
    reason: str | None = None
    same_digest: bool | None = None
    version: str | None = None  # version.available: the higher version's tag
    registry: RegistrySummary | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of folding one CheckResult into a TagState (``monitor.events``).

    ``changed`` is true when a history row is due: the first decided check,
    or a change of decided status, digest or platform digests. The store
    writes ``state``, ``events`` and (when ``changed``) a history row in one
    transaction, and ``registry`` (the registry's new state, when a
    ``registry.*`` event changed it) in the same one. ``covered`` holds the ids
    of the per-tag events that a registry event covers: recorded, but not sent
    to the webhooks that take the registry event (``monitor.notify.routing``).
    """

    state: TagState
    events: tuple[Event, ...] = ()
    changed: bool = False
    registry: RegistryState | None = None
    covered: frozenset[str] = frozenset()
