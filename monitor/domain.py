"""Pure value objects of a check, shared by every layer: its status and result.

The service's records (tag state, events, ...) are in ``monitor.records``, which
``regmon check`` never imports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.errors import Reason

if TYPE_CHECKING:
    from monitor.reference import ImageReference

__all__ = [
    "CheckResult",
    "Reason",
    "Status",
]


class Status(enum.StrEnum):
    """Outcome of one check (SPEC §2)."""

    PRESENT = "present"
    MISSING = "missing"
    DENIED = "denied"
    ERROR = "error"

    @property
    def decided(self) -> bool:
        """True for every status but ``error``: the registry gave an answer."""
        return self is not Status.ERROR


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check of one reference found.

    ``detail`` is the short cause shown in the CLI's third column for
    ``missing``/``denied`` (``manifest unknown``, ``insufficient_scope``,
    ``no credentials``) and a one-line explanation for ``error``.
    ``platforms`` maps ``os/arch[/variant]`` to the platform manifest digest.
    """

    reference: ImageReference
    status: Status
    checked_at: datetime
    digest: str | None = None
    media_type: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    reason: Reason | None = None
    detail: str | None = None
    http_status: int | None = None
    duration_ms: float = 0.0
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None

    @property
    def summary(self) -> str:
        """Third column of ``regmon check``: digest, short cause, or reason."""
        if self.status is Status.PRESENT:
            return self.digest or ""
        if self.status is Status.ERROR:
            return str(self.reason or Reason.PROTOCOL)
        return self.detail or str(self.status)
