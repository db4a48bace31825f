"""``regmon webhook test``: a signed ``test`` event sent to one webhook, not stored."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError, UsageError
from monitor.notify.channels import target_secrets
from monitor.notify.masking import mask
from monitor.notify.notifier import Delivery, Verdict
from monitor.notify.payload import SigningError, build_request
from monitor.notify.sender import post

if TYPE_CHECKING:
    import httpx

    from monitor.config import Config, WebhookConfig

__all__ = ["send_test", "test_payload"]

log = logging.getLogger("regmon.webhooks")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def test_payload(config: Config, webhook: str, now: datetime) -> dict[str, Any]:
    """A ``test`` event body with a fresh id, about a watch of ``webhook`` if there is one."""
    from monitor.config.resolve import resolve_watches
    from monitor.ids import new_event_id
    from monitor.records import Event, EventType
    from monitor.reference import parse_reference
    from monitor.wire import event_to_payload

    watches = list(resolve_watches(config))
    chosen = next((w for w in watches if webhook in w.webhooks), None) or (
        watches[0] if watches else None
    )
    reference = chosen.image if chosen else parse_reference("docker.io/regmon/webhook-test:latest")
    event = Event(
        id=new_event_id(),
        type=EventType.TEST,
        occurred_at=now,
        image=str(reference),
        reason="test delivery from regmon webhook test",
    )
    return event_to_payload(event, reference=reference)


async def send_test(config: Config, name: str, http: httpx.AsyncClient) -> tuple[int | None, str]:
    """Send a signed ``test`` event to webhook ``name`` (not stored); the answer's status and body.

    An ``apprise:`` target has no HTTP answer to show: ``(None, "sent to <redacted URL>")``.
    Raises ``UsageError`` for an unknown name, ``ConfigError`` for an unusable
    secret and ``DeliveryError`` when no answer came (or Apprise's send failed).
    """
    hook = config.webhook(name, default=None)
    if hook is None:
        known = ", ".join(h.name for h in config.webhooks) or "none"
        raise UsageError(f"no webhook named {name!r} in the config (configured: {known})")
    now = _utcnow()
    if hook.apprise is not None:
        return None, await _send_apprise_test(config, hook, now)
    secret = hook.resolved_secret()
    if not secret:
        log.warning("webhook %s has no secret: the test event is not signed", name)
    try:
        request = build_request(
            test_payload(config, name, now),
            format=hook.format,
            secret=secret,
            timestamp=now,
            extra_headers=hook.headers,
        )
    except SigningError as exc:
        raise ConfigError(f"webhooks: {name}: {exc}") from None
    response = await post(
        http,
        hook.target,
        request.body,
        request.headers,
        timeout_seconds=hook.timeout,
        redacted_url=hook.redacted_url,
    )
    return response.status_code, mask(response.text, target_secrets(hook, secret))


async def _send_apprise_test(config: Config, hook: WebhookConfig, now: datetime) -> str:
    from monitor.notify.apprise import AppriseNotifier
    from monitor.notify.sender import DeliveryError

    notifier = AppriseNotifier(str(hook.apprise), timeout=hook.timeout, workers=1)
    try:
        outcome = await notifier.send(Delivery.of([test_payload(config, hook.name, now)], now))
    finally:
        await notifier.aclose()
    if outcome.verdict is not Verdict.DELIVERED:
        raise DeliveryError(
            mask(outcome.error or "failed", target_secrets(hook)),
            permanent=outcome.permanent,
            status_code=outcome.status_code,
        )
    return f"sent to {notifier.target}"
