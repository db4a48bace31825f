"""The one exception tree of regmon, and the Reason an error carries. Imports nothing of regmon.

    RegmonError                      base; str(exc) is a one-line message for users
    ├── UsageError                   bad input from the user: exit code 2
    │   ├── InvalidReference         an image reference that does not parse
    │   └── InputError               a file that cannot be read or parsed (names file and line)
    │       └── ConfigError          a config file that does not load or validate
    ├── RegistryError                a registry interaction that failed (carries a Reason)
    │   └── AuthError                credentials rejected / token endpoint failed
    ├── RegistryDecision             the registry decided the answer mid-request (not a failure)
    │   ├── AccessDenied             denied: 403, insufficient_scope, no credentials
    │   └── NotFound                 missing: a registry's 404 for the manifest or repository
    ├── StoreError                   the database failed (monitor.store.engine)
    │   └── UnknownEventError        an event id that is not stored
    └── DeliveryError                a webhook delivery attempt failed (monitor.notify.sender)

Third-party exceptions (httpx, pydantic, yaml, sqlalchemy) are translated at the
edge with ``raise ... from exc``; nothing outside this tree reaches the CLI for
a user error.
"""

from __future__ import annotations

import enum

__all__ = [
    "AccessDenied",
    "AuthError",
    "ConfigError",
    "InputError",
    "InvalidReference",
    "NotFound",
    "Reason",
    "RegistryDecision",
    "RegistryError",
    "RegmonError",
    "UsageError",
]


class Reason(enum.StrEnum):
    """Why a check ended in ``error`` (SPEC §2); carried by every RegistryError."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    TLS = "tls"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    PROTOCOL = "protocol"
    AUTH_FAILED = "auth_failed"


class RegmonError(Exception):
    """Base of every error regmon raises on purpose."""


class UsageError(RegmonError):
    """The user asked for something invalid; the CLI exits with code 2."""


class InvalidReference(UsageError, ValueError):
    """An image reference that does not parse; the message names the offending part."""

    def __init__(self, reference: str, why: str) -> None:
        self.reference = reference
        self.why = why
        super().__init__(f"invalid image reference {reference!r}: {why}")


class InputError(UsageError):
    """A user's file (config, deployment file) that cannot be read or parsed."""


class ConfigError(InputError):
    """A config file that cannot be loaded; the message names file, key path and expectation."""


class RegistryError(RegmonError):
    """A registry interaction that could not be decided. ``reason`` is the SPEC §2 reason."""

    def __init__(self, reason: Reason, message: str, *, http_status: int | None = None) -> None:
        self.reason = reason
        self.http_status = http_status
        super().__init__(message)


class AuthError(RegistryError):
    """Credentials were rejected or the token endpoint failed."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(Reason.AUTH_FAILED, message, http_status=http_status)


class RegistryDecision(RegmonError):
    """The registry decided the check's answer from deep inside a request (the auth
    flow, a nested manifest's 404): the endpoint turns it into its answer."""

    def __init__(self, detail: str, *, http_status: int) -> None:
        self.detail = detail
        self.http_status = http_status
        super().__init__(detail)


class AccessDenied(RegistryDecision):
    """Denied: HTTP 403, ``insufficient_scope``, or no credentials where some are needed."""


class NotFound(RegistryDecision):
    """Missing: the registry's own 404 (``manifest unknown`` / ``name unknown``)."""
