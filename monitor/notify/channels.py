"""One ``Notifier`` per configured notification target, rebuilt when its config changes.

``url:`` targets are ``WebhookNotifier``s on the dispatcher's HTTP client;
``apprise:`` targets are ``AppriseNotifier``s sharing one small thread pool,
created (and ``apprise`` imported) only when such a target is configured.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from monitor.errors import ConfigError
from monitor.notify.masking import webhook_secrets
from monitor.notify.webhook import WebhookNotifier

if TYPE_CHECKING:
    import httpx

    from monitor.config import WebhookConfig
    from monitor.notify.notifier import Notifier

__all__ = ["APPRISE_WORKERS", "Channels", "target_secrets"]

APPRISE_WORKERS: Final = 4  # blocking Apprise sends at once, over every Apprise target


def target_secrets(hook: WebhookConfig, secret: str | None = None) -> tuple[str, ...]:
    """What must never be shown of ``hook``: its URL's credentials, its secret, its headers."""
    if hook.apprise is not None:
        from monitor.notify.apprise import apprise_secrets

        return tuple(apprise_secrets(hook.apprise))
    if secret is None:
        try:
            secret = hook.resolved_secret()
        except ConfigError:
            secret = None  # unreadable: then it cannot have been sent either
    return webhook_secrets(hook.target, secret=secret, headers=hook.headers)


class Channels:
    """The notifiers of the current config, by webhook name."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._built: dict[str, tuple[WebhookConfig, Notifier]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._retired: list[Notifier] = []

    def notifier(self, hook: WebhookConfig) -> Notifier:
        built = self._built.get(hook.name)
        if built is not None and built[0] == hook:
            return built[1]
        if built is not None:
            self._retired.append(built[1])
        notifier = self._build(hook)
        self._built[hook.name] = (hook, notifier)
        return notifier

    def _build(self, hook: WebhookConfig) -> Notifier:
        if hook.apprise is not None:
            from monitor.notify.apprise import AppriseNotifier

            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=APPRISE_WORKERS, thread_name_prefix="regmon-apprise"
                )
            return AppriseNotifier(hook.apprise, timeout=hook.timeout, executor=self._executor)
        return WebhookNotifier(
            hook.target,
            http=self._http,
            redacted_url=hook.redacted_url,
            format=hook.format,
            secret=hook.resolved_secret,
            headers=hook.headers,
            timeout=hook.timeout,
            name=hook.name,
            secrets=target_secrets(hook),
        )

    async def aclose(self) -> None:
        notifiers = [notifier for _, notifier in self._built.values()] + self._retired
        self._built.clear()
        self._retired.clear()
        for notifier in notifiers:
            await notifier.aclose()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
