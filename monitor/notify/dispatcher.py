"""The dispatcher: claim due deliveries from the outbox, send them, record the outcome.

One loop claims; one task per webhook sends that webhook's claimed batch one
delivery at a time. So:

* a slow or hung receiver holds up only its own webhook (checks run in other
  tasks and never wait for a delivery; other webhooks have their own tasks);
* per (webhook, tag) order holds: the outbox never offers a later delivery of
  a tag while an earlier one waits, and one webhook sends one at a time.

Crash safety: a claim is a lease (``claimed_until``). A process killed
mid-send leaves a ``sending`` row; ``start()`` turns every ``sending`` row
back to ``pending`` before the first claim, which is right because **one
regmon runs per database** (the service is a single scheduler; running two
against one database would double checks and events anyway). Were that to
change, the lease alone still recovers such rows once it expires. The
receiver may see a delivery twice after a crash (at-least-once); it
de-duplicates on ``webhook-id``, the event id.

Retries: exponential backoff with full jitter, ``uniform(0, min(cap, base *
2**attempts))``, base ``BACKOFF_BASE``, cap ``BACKOFF_CAP``; a Retry-After is
a minimum. Once ``created_at + max_retry_age`` has passed, a failed attempt
makes the delivery ``dead``; the last retry is scheduled at that deadline so
the receiver always gets a try at the end of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from monitor.errors import ConfigError, UsageError
from monitor.notify.masking import mask, webhook_secrets
from monitor.notify.payload import SigningError, WireRequest, build_request
from monitor.notify.sender import DeliveryError, post, send

if TYPE_CHECKING:
    import httpx
    from sqlalchemy import Engine

    from monitor.config import Config, WebhookConfig
    from monitor.metrics import Metrics
    from monitor.store.outbox import ClaimedDelivery

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "LEASE",
    "Dispatcher",
    "backoff_delay",
    "send_test",
    "test_payload",
]

log = logging.getLogger("regmon.webhooks")

BACKOFF_BASE: Final = 0.5  # seconds; doubled per attempt
BACKOFF_CAP: Final = 600.0
LEASE: Final = 60.0  # seconds a claim lasts at least; longer for slow webhooks
BATCH: Final = 20  # deliveries claimed per webhook at a time
POLL_INTERVAL: Final = 1.0  # seconds between claims when nothing wakes the dispatcher
SWEEP_INTERVAL: Final = 60.0  # seconds between sweeps for removed webhooks
STOP_GRACE: Final = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def backoff_delay(
    attempts: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry number ``attempts + 1``: full jitter over ``min(cap, base*2**n)``."""
    ceiling = min(cap, base * 2.0 ** min(attempts, 62))
    return (rng or random).uniform(0.0, ceiling)


class Dispatcher:
    """Sends the outbox. ``start()``/``stop()`` for the service, ``run_once()`` for tests."""

    def __init__(
        self,
        engine: Engine,
        config_provider: Callable[[], Config],
        http: httpx.AsyncClient,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        batch: int = BATCH,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._engine = engine
        self._config_provider = config_provider
        self._http = http
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._base = backoff_base
        self._cap = backoff_cap
        self._batch = batch
        self._poll = poll_interval
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workers: dict[str, asyncio.Task[int]] = {}
        self._inflight: dict[int, ClaimedDelivery] = {}
        self._next_retry: datetime | None = None
        self._known_webhooks: frozenset[str] | None = None
        self._last_sweep: datetime | None = None
        self._warned_unsigned: set[str] = set()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatch loop; its first step resets leftover ``sending`` rows."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="regmon-webhooks")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop claiming; let sends in flight finish for ``grace`` seconds, then cancel them.

        A cancelled send's claim is given back (``pending``), so the next start sends it again.
        """
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        workers = [task for task in self._workers.values() if not task.done()]
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._workers.clear()
        if self._inflight:
            from monitor.store.outbox import release_claims

            left = list(self._inflight.values())
            self._inflight.clear()
            try:
                await asyncio.to_thread(release_claims, self._engine, left, self._clock())
            except Exception:
                log.warning("could not release %d webhook deliveries on stop", len(left))

    def wakeup(self) -> None:
        """New deliveries may be due (the service calls this after writing events)."""
        self._wakeup.set()

    async def run_once(self) -> int:
        """Claim what is due now, send it, wait for the sends; the number of deliveries handled."""
        started = await self._dispatch()
        counts = await asyncio.gather(*started)
        return sum(counts)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        from monitor.store.outbox import reset_sending

        recovered = False
        failures = 0  # dispatch rounds failed in a row (a database outage, say)
        while True:
            self._wakeup.clear()
            try:
                if not recovered:
                    count = await asyncio.to_thread(
                        reset_sending, self._engine, self._clock(), all_leases=True
                    )
                    recovered = True
                    if count:
                        log.warning(
                            "%d webhook deliveries were being sent when regmon last stopped; "
                            "sending them again (receivers de-duplicate on webhook-id)",
                            count,
                        )
                await self._dispatch()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th …: a backoff, not a flood
                    _log_dispatch_failure(exc, failures)
            try:
                async with asyncio.timeout(self._sleep_seconds()):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _sleep_seconds(self) -> float:
        if self._next_retry is None:
            return self._poll
        until = (self._next_retry - self._clock()).total_seconds()
        return min(max(until, 0.01), self._poll)

    async def _dispatch(self) -> list[asyncio.Task[int]]:
        """Claim for every idle webhook and start its sender task; the tasks started."""
        from monitor.store.outbox import claim_due_deliveries

        config = self._config_provider()
        hooks = {hook.name: hook for hook in config.webhooks}
        now = self._clock()
        await self._sweep_removed(frozenset(hooks), now)
        self._next_retry = None
        started: list[asyncio.Task[int]] = []
        for name, hook in hooks.items():
            if self._stopping:
                break
            busy = self._workers.get(name)
            if busy is not None and not busy.done():
                continue
            # The lease must outlast the whole batch, each send bounded by the timeout.
            lease = timedelta(seconds=max(LEASE, self._batch * hook.timeout + 30.0))
            claimed = await asyncio.to_thread(
                claim_due_deliveries, self._engine, now, self._batch, lease, webhooks=[name]
            )
            if not claimed:
                continue
            for delivery in claimed:
                self._inflight[delivery.id] = delivery
            task = asyncio.create_task(self._work(name, claimed), name=f"regmon-webhook-{name}")
            self._workers[name] = task
            started.append(task)
        return started

    async def _sweep_removed(self, names: frozenset[str], now: datetime) -> None:
        """Mark deliveries of webhooks that left the config dead (on change, and now and then)."""
        from monitor.store.outbox import kill_removed_webhooks

        due = self._last_sweep is None or (now - self._last_sweep).total_seconds() >= SWEEP_INTERVAL
        if names == self._known_webhooks and not due:
            return
        removed = await asyncio.to_thread(kill_removed_webhooks, self._engine, names, now)
        self._known_webhooks, self._last_sweep = names, now
        for name, count in sorted(removed.items()):
            log.warning(
                "webhook %s: removed from config; %d deliveries dropped as dead", name, count
            )
            if self._metrics is not None:
                for _ in range(count):
                    self._metrics.observe_delivery(name, "dead")

    async def _work(self, name: str, claimed: Sequence[ClaimedDelivery]) -> int:
        handled = 0
        try:
            for delivery in claimed:
                if self._stopping:
                    break
                try:
                    await self._deliver(delivery)
                except Exception as exc:
                    # A bug or a database outage: the claim's lease brings the row back.
                    _log_delivery_failure(exc, name, delivery.event_id)
                    continue
                self._inflight.pop(delivery.id, None)
                handled += 1
        finally:
            self.wakeup()  # this webhook is idle again: its next deliveries may be due
        return handled

    # -- one delivery ------------------------------------------------------------------

    def _hook(self, name: str) -> WebhookConfig | None:
        return self._config_provider().webhook(name, default=None)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        from monitor.store.outbox import finish_delivery

        hook = self._hook(delivery.webhook)
        now = self._clock()
        if hook is None:
            await asyncio.to_thread(
                finish_delivery,
                self._engine,
                delivery,
                attempted_at=now,
                status="dead",
                error="webhook removed from config",
                attempted=False,
            )
            self._observe(delivery.webhook, "dead")
            return
        try:
            request = self._request(hook, delivery, now)
            response = await send(
                self._http,
                hook.url,
                request.body,
                request.headers,
                timeout_seconds=hook.timeout,
                redacted_url=hook.redacted_url,
                secrets=_secrets(hook),
            )
        except DeliveryError as exc:
            await self._record_failure(hook, delivery, now, exc)
            return
        except Exception as exc:
            # Something we did not foresee: a retry with backoff (and, after
            # max_retry_age, dead), never a row stuck in 'sending' holding up the tag.
            log.warning("webhook %s: unexpected %r", hook.name, exc, exc_info=True)
            failure = DeliveryError(f"internal error: {type(exc).__name__}", permanent=False)
            await self._record_failure(hook, delivery, now, failure)
            return
        await asyncio.to_thread(
            finish_delivery,
            self._engine,
            delivery,
            attempted_at=now,
            status="delivered",
            status_code=response.status_code,
            latency_ms=response.latency_ms,
        )
        self._observe(hook.name, "delivered")
        log.info(
            "webhook %s: delivered %s %s (event %s, HTTP %d, %.0f ms)",
            hook.name,
            delivery.event_type,
            delivery.image,
            delivery.event_id,
            response.status_code,
            response.latency_ms,
        )

    def _request(
        self, hook: WebhookConfig, delivery: ClaimedDelivery, now: datetime
    ) -> WireRequest:
        try:
            secret = hook.resolved_secret()
            if not secret and hook.name not in self._warned_unsigned:
                self._warned_unsigned.add(hook.name)
                log.warning(
                    "webhook %s has no secret: its deliveries are not signed "
                    "(set secret_file or secret)",
                    hook.name,
                )
            return build_request(
                delivery.payload,
                format=hook.format,
                secret=secret,
                timestamp=now,
                extra_headers=hook.headers,
            )
        except (ConfigError, SigningError) as exc:
            # Fixable by the operator (mount the file, fix the secret): retry, don't drop.
            raise DeliveryError(f"cannot sign: {exc}", permanent=False) from None

    async def _record_failure(
        self, hook: WebhookConfig, delivery: ClaimedDelivery, now: datetime, exc: DeliveryError
    ) -> None:
        from monitor.store.outbox import finish_delivery

        # Masked again here: last_error and the log are the last stop before storage.
        error = mask(str(exc), _secrets(hook))
        deadline = delivery.created_at + timedelta(seconds=hook.max_retry_age)
        next_attempt: datetime | None = None
        if exc.permanent:
            status, outcome = "failed", "failed"
        elif now >= deadline:
            status, outcome = "dead", "dead"
        else:
            status, outcome = "pending", "retry"
            delay = backoff_delay(delivery.attempts, base=self._base, cap=self._cap, rng=self._rng)
            next_attempt = min(now + timedelta(seconds=delay), deadline)
            if exc.retry_after is not None:
                next_attempt = max(next_attempt, now + timedelta(seconds=exc.retry_after))
        await asyncio.to_thread(
            finish_delivery,
            self._engine,
            delivery,
            attempted_at=now,
            status=status,
            status_code=exc.status_code,
            error=error,
            latency_ms=exc.latency_ms,
            next_attempt_at=next_attempt,
        )
        self._observe(hook.name, outcome)
        if next_attempt is not None:
            if self._next_retry is None or next_attempt < self._next_retry:
                self._next_retry = next_attempt
            log.warning(
                "webhook %s: %s %s (event %s) attempt %d failed: %s; retrying in %.1fs",
                hook.name,
                delivery.event_type,
                delivery.image,
                delivery.event_id,
                delivery.attempts + 1,
                error,
                (next_attempt - now).total_seconds(),
            )
        else:
            log.error(
                "webhook %s: %s %s (event %s) %s after %d attempts: %s",
                hook.name,
                delivery.event_type,
                delivery.image,
                delivery.event_id,
                "given up (failed)" if status == "failed" else "dead (max_retry_age passed)",
                delivery.attempts + 1,
                error,
            )

    def _observe(self, webhook: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_delivery(webhook, outcome)


def _secrets(hook: WebhookConfig, secret: str | None = None) -> tuple[str, ...]:
    """What must never be shown of ``hook``: its URL's credentials, its secret, its headers."""
    if secret is None:
        try:
            secret = hook.resolved_secret()
        except ConfigError:
            secret = None  # unreadable: then it cannot have been sent either
    return webhook_secrets(hook.url, secret=secret, headers=hook.headers)


def _log_dispatch_failure(exc: Exception, failures: int) -> None:
    from monitor.store.engine import error_line, is_database_error

    if is_database_error(exc):
        # One line: the driver's message, not the SQL with its parameters.
        log.warning(
            "webhook dispatch failed (%d in a row): %s; will retry", failures, error_line(exc)
        )
    else:
        log.exception("webhook dispatch failed (%d in a row); will retry", failures)


def _log_delivery_failure(exc: Exception, webhook: str, event_id: str) -> None:
    from monitor.store.engine import error_line, is_database_error

    if is_database_error(exc):
        log.warning(
            "webhook %s: recording the delivery of event %s failed: %s; "
            "it is retried when its claim expires",
            webhook,
            event_id,
            error_line(exc),
        )
    else:
        log.exception("webhook %s: delivering event %s failed unexpectedly", webhook, event_id)


# -- regmon webhook test -------------------------------------------------------------------


def test_payload(config: Config, webhook: str, now: datetime) -> dict[str, Any]:
    """A ``test`` event body with a fresh id, about a watch of ``webhook`` if there is one."""
    from monitor.domain import Event, EventType
    from monitor.ids import new_event_id
    from monitor.reference import parse_reference
    from monitor.wire import event_to_payload

    watches = list(config.watches())
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


async def send_test(config: Config, name: str, http: httpx.AsyncClient) -> tuple[int, str]:
    """Send a signed ``test`` event to webhook ``name`` (not stored); the answer's status and body.

    Raises ``UsageError`` for an unknown name, ``ConfigError`` for an unusable
    secret and ``DeliveryError`` when no answer came.
    """
    hook = config.webhook(name, default=None)
    if hook is None:
        known = ", ".join(h.name for h in config.webhooks) or "none"
        raise UsageError(f"no webhook named {name!r} in the config (configured: {known})")
    now = _utcnow()
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
        hook.url,
        request.body,
        request.headers,
        timeout_seconds=hook.timeout,
        redacted_url=hook.redacted_url,
    )
    return response.status_code, mask(response.text, _secrets(hook, secret))
