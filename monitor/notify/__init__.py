"""Webhook notifications (SPEC §6): payload and signing, sender, dispatcher.

notifier.py    the Notifier seam: Delivery (one event or a batch) → Outcome   pure
payload.py     body bytes per format + Standard Webhooks headers       pure
formats/       the Formatter plugins: json, slack, discord; text       pure
sender.py      one POST, and what its answer means for retrying
webhook.py     the HTTP webhook as a Notifier (payload + sender)
apprise.py     Apprise URLs as a Notifier (imports apprise lazily: not re-exported here)
channels.py    one Notifier per configured target (url: or apprise:), rebuilt on change
dispatcher.py  claim from the outbox (single deliveries, or a batch: window) → send → record
backoff.py     retry spacing (full jitter)                             pure
units.py       a claimed delivery or batch: its members, id and name   pure
trial.py       ``regmon webhook test``: ``send_test``
"""

from monitor.notify.backoff import backoff_delay
from monitor.notify.dispatcher import Dispatcher
from monitor.notify.formats import FORMATTERS, Formatter, formatter_for
from monitor.notify.notifier import Delivery, Notifier, Outcome, Verdict, batch_id
from monitor.notify.payload import SigningError, WireRequest, build_request, render_body
from monitor.notify.sender import DeliveryError
from monitor.notify.trial import send_test

__all__ = [
    "FORMATTERS",
    "Delivery",
    "DeliveryError",
    "Dispatcher",
    "Formatter",
    "Notifier",
    "Outcome",
    "SigningError",
    "Verdict",
    "WireRequest",
    "backoff_delay",
    "batch_id",
    "build_request",
    "formatter_for",
    "render_body",
    "send_test",
]
