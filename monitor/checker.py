"""One reference → one CheckResult. No database, no scheduling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from monitor.domain import CheckResult, Reason, Status
from monitor.errors import AuthError, RegistryError, RegmonError
from monitor.reference import ImageReference, canonical_registry
from monitor.registry.client import (
    ManifestAnswer,
    RegistryClient,
    RegistrySettings,
    RequestObserver,
)
from monitor.registry.session import RegistrySlots
from monitor.registry.transport import TransportFactory

if TYPE_CHECKING:
    from monitor.config import Config

__all__ = [
    "RETRYABLE",
    "RegistrySlots",
    "check_reference",
    "client_from_config",
    "registry_settings",
]

log = logging.getLogger("regmon.checker")

# Reasons worth another attempt inside the check's time budget.
RETRYABLE = frozenset({Reason.UNREACHABLE, Reason.SERVER_ERROR, Reason.RATE_LIMITED})
MAX_ATTEMPTS = 3
RETRY_DELAYS = (0.2, 0.5)
_T = TypeVar("_T")


async def check_reference(
    client: RegistryClient,
    ref: ImageReference,
    *,
    platforms: Sequence[str] = (),
    budget: float = RegistrySettings().timeout,
) -> CheckResult:
    """Check one reference within ``budget`` seconds, retries included.

    The budget measures the check, not one-time setup: building the transport
    (imports, TLS context) happens before it starts, and the registry's discovery
    (``GET /v2/``, once per registry, shared by every check) has a budget of its
    own of the same size. A 429 is retried after the registry's back-off for as
    long as the budget lasts; unreachable and 5xx answers get up to three
    attempts. When the budget runs out the reason is the last failure seen,
    else ``timeout``.
    """
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    answer: ManifestAnswer | None = None
    try:
        client.prepare(ref.api_host)
    except RegistryError as exc:
        failure: RegistryError | None = exc
    else:
        failure = None
        if not client.discovered(ref.api_host):  # a budget and its timer only when it asks
            _, failure = await _within(budget, client, ref, lambda: client.discover(ref.api_host))
        if failure is None:
            answer, failure = await _within(
                budget, client, ref, lambda: client.fetch_manifest(ref, platforms=platforms)
            )
    limit, remaining = client.ratelimit(ref.api_host)
    if answer is not None:
        return CheckResult(
            reference=ref,
            status=answer.status,
            checked_at=checked_at,
            digest=answer.digest if answer.status is Status.PRESENT else None,
            media_type=answer.media_type,
            platforms=answer.platforms,
            detail=answer.detail,
            http_status=answer.http_status,
            duration_ms=(time.monotonic() - started) * 1000,
            ratelimit_limit=limit,
            ratelimit_remaining=remaining,
        )
    if failure is None:  # pragma: no cover - _within returns one or the other
        failure = RegistryError(Reason.PROTOCOL, "no answer and no failure")
    return CheckResult(
        reference=ref,
        status=Status.ERROR,
        checked_at=checked_at,
        reason=failure.reason,
        detail=str(failure),
        http_status=failure.http_status,
        duration_ms=(time.monotonic() - started) * 1000,
        ratelimit_limit=limit,
        ratelimit_remaining=remaining,
    )


async def _within(
    budget: float,
    client: RegistryClient,
    ref: ImageReference,
    call: Callable[[], Awaitable[_T]],
) -> tuple[_T | None, RegistryError | None]:
    """``call()`` with retries inside ``budget``: (result, None) or (None, last failure)."""
    failure: RegistryError | None = None
    attempts = 0
    try:
        async with asyncio.timeout(budget):
            while True:
                attempts += 1
                try:
                    return await call(), None
                except RegistryError as exc:
                    failure = exc
                    if exc.reason is Reason.RATE_LIMITED:
                        await client.wait_for_backoff(ref.api_host)
                        continue
                    if exc.reason in RETRYABLE and attempts < MAX_ATTEMPTS:
                        await asyncio.sleep(RETRY_DELAYS[attempts - 1])
                        continue
                    return None, exc
                except Exception as exc:
                    # An answer we did not foresee is a protocol error, not a crash.
                    log.debug("check of %s: unexpected %r", ref, exc, exc_info=True)
                    return None, RegistryError(
                        Reason.PROTOCOL, f"unexpected {type(exc).__name__} from the registry"
                    )
    except TimeoutError:
        pass  # SPEC §3: the reason is then the last failure seen, else timeout
    return None, failure or RegistryError(Reason.TIMEOUT, f"no answer within {budget:g}s")


def registry_settings(config: Config | None, host: str) -> RegistrySettings:
    """The settings of registry ``host``: from ``config``, else the registry's defaults."""
    return RegistrySettings() if config is None else config.registry_settings(host)


def client_from_config(
    config: Config | None,
    *,
    observer: RequestObserver | None = None,
    transport_factory: TransportFactory | None = None,
    slots: RegistrySlots | None = None,
) -> RegistryClient:
    """A RegistryClient whose per-registry settings and credentials come from ``config``.

    ``slots``: the registries' concurrency gates, kept across clients (reloads).
    ``None`` means no config file: default settings, credentials from docker's
    config.json only, and no pydantic import on the ``regmon check`` path.
    """
    from monitor.registry.credentials import (
        Credential,
        CredentialStore,
        docker_config_path,
    )

    if config is None:
        return RegistryClient(
            credentials=CredentialStore(docker_config=docker_config_path()),
            observer=observer,
            transport_factory=transport_factory,
            slots=slots,
        )

    def configured(host: str) -> Credential | None:
        reg = config.registry_for(canonical_registry(host))
        if reg.username is None:
            return None
        try:
            password = reg.resolved_password() or ""
        except RegmonError as exc:  # e.g. an unreadable password_file
            raise AuthError(str(exc)) from exc
        return Credential(username=reg.username, password=password)

    store = CredentialStore(configured, docker_config_path(config.docker_config))
    return RegistryClient(
        settings_for=config.registry_settings,
        credentials=store,
        observer=observer,
        transport_factory=transport_factory,
        slots=slots,
    )
