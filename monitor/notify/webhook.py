"""The HTTP webhook behind the ``Notifier`` seam: sign, POST, and read the answer.

The pieces are the ones the dispatcher used before the seam (``payload`` signs,
``sender`` posts and classifies); this adapter turns their ``DeliveryError``
into an ``Outcome``, so the dispatcher treats every channel the same way.

The signing secret is read at each send (``secret``: a value, or a callable
reading ``secret_file``): a secret file mounted or fixed later takes effect
on the next retry, and one that cannot be read is a retry ("cannot sign"),
never a drop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from monitor.errors import ConfigError
from monitor.notify.notifier import Delivery, Outcome
from monitor.notify.payload import SigningError, build_delivery_request
from monitor.notify.sender import DeliveryError, send

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookNotifier"]

log = logging.getLogger("regmon.webhooks")


class WebhookNotifier:
    """One webhook URL in one ``format``; ``redacted_url`` names it in errors and logs."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient,
        redacted_url: str,
        format: str = "json",
        secret: str | Callable[[], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        name: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._url = url
        self._http = http
        self._target = redacted_url
        self._format = format
        self._secret = secret
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._name = name or redacted_url
        self._secrets = tuple(secrets)  # masked in quoted answers
        self._warned_unsigned = False

    @property
    def target(self) -> str:
        return self._target

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._target!r}, format={self._format!r})"

    __str__ = __repr__

    def _resolved_secret(self) -> str | None:
        secret = self._secret() if callable(self._secret) else self._secret
        if not secret and not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning(
                "webhook %s has no secret: its deliveries are not signed "
                "(set secret_file or secret)",
                self._name,
            )
        return secret

    async def send(self, delivery: Delivery) -> Outcome:
        try:
            request = build_delivery_request(
                delivery,
                format=self._format,
                secret=self._resolved_secret(),
                extra_headers=self._headers,
            )
        except (ConfigError, SigningError) as exc:
            # Fixable by the operator (mount the file, fix the secret): retry, don't drop.
            return Outcome.retry(f"cannot sign: {exc}")
        try:
            response = await send(
                self._http,
                self._url,
                request.body,
                request.headers,
                timeout_seconds=self._timeout,
                redacted_url=self._target,
                secrets=self._secrets,
            )
        except DeliveryError as exc:
            return Outcome.from_error(exc)
        return Outcome.delivered(status_code=response.status_code, latency_ms=response.latency_ms)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client belongs to whoever passed it in."""
