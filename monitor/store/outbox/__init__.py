"""The webhook outbox: claim due deliveries (single or batched), record attempts, recover.

The protocol (claims, leases as fencing tokens, the order rule) is drawn in
``monitor.store.outbox.claims``.
"""

from monitor.store.outbox.batches import ClaimedBatch, claim_due_batches, finish_batch, form_batch
from monitor.store.outbox.claims import (
    ERROR_LIMIT,
    WAITING,
    ClaimedDelivery,
    claim_due_deliveries,
    finish_delivery,
    kill_removed_webhooks,
    release_claims,
    reset_sending,
)
from monitor.store.outbox.reads import DeliveryState, delivery_states

__all__ = [
    "ERROR_LIMIT",
    "WAITING",
    "ClaimedBatch",
    "ClaimedDelivery",
    "DeliveryState",
    "claim_due_batches",
    "claim_due_deliveries",
    "delivery_states",
    "finish_batch",
    "finish_delivery",
    "form_batch",
    "kill_removed_webhooks",
    "release_claims",
    "reset_sending",
]
