"""Webhook notifications (SPEC §6): payload and signing, sender, dispatcher.

payload.py     body bytes per format + Standard Webhooks headers       pure
formats/       the Formatter plugins: json, slack, discord             pure
sender.py      one POST, and what its answer means for retrying
dispatcher.py  claim from the outbox → send → record; ``send_test``
"""

from monitor.notify.dispatcher import Dispatcher, backoff_delay, send_test
from monitor.notify.formats import FORMATTERS, Formatter, formatter_for
from monitor.notify.payload import SigningError, WireRequest, build_request, render_body
from monitor.notify.sender import DeliveryError

__all__ = [
    "FORMATTERS",
    "DeliveryError",
    "Dispatcher",
    "Formatter",
    "SigningError",
    "WireRequest",
    "backoff_delay",
    "build_request",
    "formatter_for",
    "render_body",
    "send_test",
]
