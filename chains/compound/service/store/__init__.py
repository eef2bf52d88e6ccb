"""Durable state of the chain service: jobs, step results, external events, webhook outbox."""
from compound.service.store.base import (  # noqa: F401
    AsyncStore, Delivery, IdempotencyConflict, Job, OutboxMessage, Pending, Store, open_store,
    request_hash, webhook_id_for,
)
