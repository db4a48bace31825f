"""What one delivery puts on the wire: body bytes and headers (pure: no I/O, no clock).

Standard Webhooks signing (https://www.standardwebhooks.com): ``webhook-id``
is the event id, the same on every retry so receivers can de-duplicate;
``webhook-timestamp`` is the time of this attempt (receivers refuse stale
timestamps, so a retry is signed afresh); ``webhook-signature`` is
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` made by the
``standardwebhooks`` package.

A batch (several events in one delivery) is signed the same way, with the
batch id (``notifier.batch_id``) as ``webhook-id``.

A webhook without a secret is sent with ``webhook-id`` and
``webhook-timestamp`` but no signature (the dispatcher warns once per webhook);
SPEC §6 expects signed deliveries, so every example config sets a secret.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from math import floor
from typing import TYPE_CHECKING, Any

import monitor
from monitor.notify.formats import formatter_for

if TYPE_CHECKING:
    from monitor.notify.notifier import Delivery

__all__ = [
    "USER_AGENT",
    "SigningError",
    "WireRequest",
    "build_delivery_request",
    "build_request",
    "render_batch_body",
    "render_body",
    "sign",
]

USER_AGENT = f"regmon/{monitor.__version__}"


class SigningError(ValueError):
    """The secret cannot be used for signing; the message never contains the secret."""


@dataclass(frozen=True, slots=True)
class WireRequest:
    """The bytes and headers of one POST (the URL is the webhook's, added by the sender)."""

    body: bytes
    headers: dict[str, str]


def render_body(payload: Mapping[str, Any], format: str) -> bytes:
    """The body for ``format`` from the stored SPEC §6 event body, as compact UTF-8 JSON."""
    document = formatter_for(format).render(payload)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render_batch_body(batch_id: str, payloads: Sequence[Mapping[str, Any]], format: str) -> bytes:
    """The one body for a batch of event bodies (oldest first), as compact UTF-8 JSON."""
    document = formatter_for(format).render_batch(batch_id, payloads)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: datetime, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for ``body``."""
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import EmptyWebhookSecretError

    try:
        signer = Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError) as exc:
        raise SigningError(
            "the webhook secret is not a Standard Webhooks secret (whsec_ followed by base64)"
        ) from exc
    # standardwebhooks reads the timestamp as UTC whatever its tzinfo: give it UTC.
    signature: str = signer.sign(msg_id, timestamp.astimezone(UTC), body.decode("utf-8"))
    return signature


def build_request(
    payload: Mapping[str, Any],
    *,
    format: str,
    secret: str | None,
    timestamp: datetime,
    extra_headers: Mapping[str, str] | None = None,
) -> WireRequest:
    """Body and headers of one delivery attempt of the event ``payload``.

    ``payload["id"]`` (the event id) is the ``webhook-id``. Configured
    ``extra_headers`` come after ``content-type`` and ``user-agent`` (so they may
    replace the user agent); config validation keeps them off the
    ``webhook-*``, ``content-type``, ``content-length`` and ``host`` headers.
    """
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    body = render_body(payload, format)
    return _signed(body, str(payload["id"]), secret, timestamp, extra_headers)


def build_delivery_request(
    delivery: Delivery,
    *,
    format: str,
    secret: str | None,
    extra_headers: Mapping[str, str] | None = None,
) -> WireRequest:
    """Body and headers of one attempt of ``delivery``: one event as ``build_request``
    makes it, several as one batch body, signed with the delivery id at its attempt time."""
    if delivery.is_batch:
        body = render_batch_body(delivery.id, delivery.events, format)
    else:
        body = render_body(delivery.events[0], format)
    return _signed(body, delivery.id, secret, delivery.attempted_at, extra_headers)


def _signed(
    body: bytes,
    msg_id: str,
    secret: str | None,
    timestamp: datetime,
    extra_headers: Mapping[str, str] | None,
) -> WireRequest:
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    for name, value in (extra_headers or {}).items():
        headers[name.lower()] = value
    headers["webhook-id"] = msg_id
    headers["webhook-timestamp"] = str(floor(timestamp.timestamp()))
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    return WireRequest(body=body, headers=headers)
