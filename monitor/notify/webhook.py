"""The HTTP webhook behind the ``Notifier`` seam: sign, POST, and read the answer.

The pieces are the ones the dispatcher uses today (``payload`` signs,
``sender`` posts and classifies); this adapter only turns their
``DeliveryError`` into an ``Outcome``, so the dispatcher can treat every
channel the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from monitor.notify.notifier import Delivery, Outcome
from monitor.notify.payload import SigningError, build_delivery_request
from monitor.notify.sender import DeliveryError, send

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookNotifier"]


class WebhookNotifier:
    """One webhook URL in one ``format``; ``redacted_url`` names it in errors and logs."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient,
        redacted_url: str,
        format: str = "json",
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._http = http
        self._target = redacted_url
        self._format = format
        self._secret = secret
        self._headers = dict(headers or {})
        self._timeout = timeout

    @property
    def target(self) -> str:
        return self._target

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._target!r}, format={self._format!r})"

    __str__ = __repr__

    async def send(self, delivery: Delivery) -> Outcome:
        try:
            request = build_delivery_request(
                delivery, format=self._format, secret=self._secret, extra_headers=self._headers
            )
        except SigningError as exc:
            # Fixable by the operator (fix the secret): retry, don't drop.
            return Outcome.retry(f"cannot sign: {exc}")
        try:
            response = await send(
                self._http,
                self._url,
                request.body,
                request.headers,
                timeout_seconds=self._timeout,
                redacted_url=self._target,
            )
        except DeliveryError as exc:
            return Outcome.from_error(exc)
        return Outcome.delivered(status_code=response.status_code, latency_ms=response.latency_ms)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client belongs to whoever passed it in."""
