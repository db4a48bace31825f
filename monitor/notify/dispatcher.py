"""The dispatcher: claim due deliveries from the outbox, send them, record the outcome.

Every channel is a ``Notifier`` (``notify/channels.py`` builds one per
configured target: ``WebhookNotifier`` for ``url:``, ``AppriseNotifier`` for
``apprise:``); the dispatcher maps its ``Outcome`` to the outbox the same way
for all of them: delivered → ``delivered``; retry → ``pending`` with backoff
(a ``retry_after`` is the least wait), or ``dead`` once ``max_retry_age`` has
passed; failed → ``failed``.

A webhook with ``batch:`` sends windows, not events: once its oldest unsent
delivery is ``batch`` old, the deliveries created within that window become
one batch in the outbox (``form_batch``, one transaction, a stable id), which
is claimed, sent as one ``Delivery`` and finished as a whole.

One loop claims; one task per webhook sends what that webhook claimed one
delivery at a time. So:

* a slow or hung receiver holds up only its own webhook (checks run in other
  tasks and never wait for a delivery; other webhooks have their own tasks);
* per (webhook, tag) order holds: the outbox never offers a later delivery of
  a tag while an earlier one waits, and one webhook sends one at a time.

Crash safety: a claim is a lease (``claimed_until``). A process killed
mid-send leaves a ``sending`` row. Each time this dispatcher begins to send
(at start, or when its replica takes the lead, ``may_send`` turning true)
it turns every ``sending`` row it does not own itself back to ``pending``
before its first claim: only the leader claims, and the leader before it is
fenced out of the database (``monitor.store.lease``), so such a row is a
leftover of a process that died or lost the lead mid-send. A follower
resets nothing. Otherwise the claim's own expiry still recovers a row. The
receiver may see a delivery twice after a crash or a failover (at-least-once:
a send in flight when its leader died is sent again, with the same
``webhook-id``); it de-duplicates on ``webhook-id``, the event id or the
batch id.

Retries: exponential backoff with full jitter, ``uniform(0, min(cap, base *
2**attempts))``, base ``BACKOFF_BASE``, cap ``BACKOFF_CAP``; a Retry-After is
a minimum. Once ``created_at + max_retry_age`` has passed, a failed attempt
makes the delivery ``dead``; the last retry is scheduled at that deadline so
the receiver always gets a try at the end of the window.

Store work runs in a thread through ``in_thread``: ``stop()`` cancels the loop and
the late senders wherever they are, and returns only once their threads have given
their connections back (the service disposes the engine next).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from monitor.notify.backoff import BACKOFF_BASE, BACKOFF_CAP, backoff_delay
from monitor.notify.channels import Channels, target_secrets
from monitor.notify.masking import mask
from monitor.notify.notifier import Delivery, Outcome, Verdict
from monitor.notify.units import _label, _members, _what, delivery_id
from monitor.records import DeliveryStatus
from monitor.threads import in_thread

if TYPE_CHECKING:
    import httpx
    from sqlalchemy import Engine

    from monitor.config import Config, WebhookConfig
    from monitor.metrics import Metrics
    from monitor.store.outbox import ClaimedBatch, ClaimedDelivery

    _Unit = ClaimedDelivery | ClaimedBatch

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "LEASE",
    "Dispatcher",
    "backoff_delay",
]

log = logging.getLogger("regmon.webhooks")

LEASE: Final = 60.0  # seconds a claim lasts at least; longer for slow webhooks
BATCH: Final = 20  # deliveries claimed per webhook at a time
MAX_BATCH_EVENTS: Final = 100  # events in one batch delivery; more wait for the next one
POLL_INTERVAL: Final = 1.0  # seconds between claims when nothing wakes the dispatcher
SWEEP_INTERVAL: Final = 60.0  # seconds between sweeps for removed webhooks
STOP_GRACE: Final = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        channels: Channels | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self._engine = engine
        # The coordinator's is_leader (monitor.runtime.leader): only the leader claims.
        self._may_send = may_send
        self._config_provider = config_provider
        self._http = http
        self._channels = channels or Channels(http)
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
        self._sending: set[int] = set()  # ids of the unit being sent right now
        self._next_retry: datetime | None = None
        self._known_webhooks: frozenset[str] | None = None
        self._last_sweep: datetime | None = None
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
                await in_thread(release_claims, self._engine, left, self._clock())
            except Exception:
                log.warning("could not release %d webhook deliveries on stop", len(left))
        await self._channels.aclose()

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
                if self._may_send is not None and not self._may_send():
                    recovered = False  # taking the lead again recovers again
                elif not recovered:
                    count = await in_thread(
                        reset_sending,
                        self._engine,
                        self._clock(),
                        all_leases=True,
                        keep=frozenset(self._sending),
                    )
                    recovered = True
                    if count:
                        log.warning(
                            "%d webhook deliveries were being sent when regmon (or the last "
                            "leader) stopped; sending them again (receivers de-duplicate on "
                            "webhook-id)",
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
        if self._may_send is not None and not self._may_send():
            return []
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
            units = await self._claim(hook, now)
            if not units:
                continue
            for unit in units:
                for delivery in _members(unit):
                    self._inflight[delivery.id] = delivery
            task = asyncio.create_task(self._work(name, units), name=f"regmon-webhook-{name}")
            self._workers[name] = task
            started.append(task)
        return started

    async def _claim(self, hook: WebhookConfig, now: datetime) -> Sequence[_Unit]:
        """What ``hook`` sends next: a batch (formed first when its window has closed), or
        up to ``batch`` single deliveries."""
        from monitor.store.outbox import claim_due_batches, claim_due_deliveries, form_batch

        # A batch from before a config change (batch: removed) is still sent as one.
        batch_lease = timedelta(seconds=max(LEASE, hook.timeout + 30.0))
        batches = await in_thread(
            claim_due_batches, self._engine, now, batch_lease, webhooks=[hook.name]
        )
        if batches or hook.batch is None:
            if batches:
                return batches
            # The lease must outlast the whole batch, each send bounded by the timeout.
            lease = timedelta(seconds=max(LEASE, self._batch * hook.timeout + 30.0))
            return await in_thread(
                claim_due_deliveries, self._engine, now, self._batch, lease, webhooks=[hook.name]
            )
        formed = await in_thread(
            form_batch,
            self._engine,
            hook.name,
            now,
            timedelta(seconds=hook.batch),
            MAX_BATCH_EVENTS,
            delivery_id,
        )
        if formed is None:
            return []
        return await in_thread(
            claim_due_batches, self._engine, now, batch_lease, webhooks=[hook.name]
        )

    async def _sweep_removed(self, names: frozenset[str], now: datetime) -> None:
        """Mark deliveries of webhooks that left the config dead (on change, and now and then)."""
        from monitor.store.outbox import kill_removed_webhooks

        due = self._last_sweep is None or (now - self._last_sweep).total_seconds() >= SWEEP_INTERVAL
        if names == self._known_webhooks and not due:
            return
        removed = await in_thread(kill_removed_webhooks, self._engine, names, now)
        self._known_webhooks, self._last_sweep = names, now
        for name, count in sorted(removed.items()):
            log.warning(
                "webhook %s: removed from config; %d deliveries dropped as dead", name, count
            )
            if self._metrics is not None:
                for _ in range(count):
                    self._metrics.observe_delivery(name, DeliveryStatus.DEAD)

    async def _work(self, name: str, claimed: Sequence[_Unit]) -> int:
        handled = 0
        try:
            for unit in claimed:
                if self._stopping or (self._may_send is not None and not self._may_send()):
                    break  # lost the lead: the next leader sends what is left
                ids = {delivery.id for delivery in _members(unit)}
                self._sending |= ids
                try:
                    await self._deliver(unit)
                except Exception as exc:
                    # A bug or a database outage: the claim's lease brings the rows back.
                    _log_delivery_failure(exc, name, _label(unit))
                    continue
                finally:
                    self._sending -= ids
                for delivery in _members(unit):
                    self._inflight.pop(delivery.id, None)
                handled += len(_members(unit))
        finally:
            self.wakeup()  # this webhook is idle again: its next deliveries may be due
        return handled

    # -- one delivery ------------------------------------------------------------------

    def _hook(self, name: str) -> WebhookConfig | None:
        return self._config_provider().webhook(name, default=None)

    async def _finish(self, unit: _Unit, **values: Any) -> bool:
        from monitor.store.outbox import ClaimedBatch, finish_batch, finish_delivery

        if isinstance(unit, ClaimedBatch):
            return await in_thread(finish_batch, self._engine, unit, **values)
        return await in_thread(finish_delivery, self._engine, unit, **values)

    async def _deliver(self, unit: _Unit) -> None:
        hook = self._hook(unit.webhook)
        now = self._clock()
        if hook is None:
            await self._finish(
                unit,
                attempted_at=now,
                status=DeliveryStatus.DEAD,
                error="webhook removed from config",
                attempted=False,
            )
            self._observe(unit.webhook, DeliveryStatus.DEAD)
            return
        members = _members(unit)
        delivery = Delivery(
            id=_label(unit), events=tuple(m.payload for m in members), attempted_at=now
        )
        try:
            outcome = await self._channels.notifier(hook).send(delivery)
        except Exception as exc:
            # Something we did not foresee: a retry with backoff (and, after
            # max_retry_age, dead), never a row stuck in 'sending' holding up the tag.
            log.warning("webhook %s: unexpected %r", hook.name, exc, exc_info=True)
            outcome = Outcome.retry(f"internal error: {type(exc).__name__}")
        if outcome.verdict is not Verdict.DELIVERED:
            await self._record_failure(hook, unit, now, outcome)
            return
        await self._finish(
            unit,
            attempted_at=now,
            status=DeliveryStatus.DELIVERED,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
        )
        self._observe(hook.name, Verdict.DELIVERED)
        log.info(
            "webhook %s: delivered %s (%s%.0f ms)",
            hook.name,
            _what(unit),
            f"HTTP {outcome.status_code}, " if outcome.status_code is not None else "",
            outcome.latency_ms or 0.0,
        )

    async def _record_failure(
        self, hook: WebhookConfig, unit: _Unit, now: datetime, outcome: Outcome
    ) -> None:
        # Masked again here: last_error and the log are the last stop before storage.
        error = mask(outcome.error or "failed (no detail)", target_secrets(hook))
        created_at, attempts = unit.created_at, unit.attempts
        deadline = created_at + timedelta(seconds=hook.max_retry_age)
        next_attempt: datetime | None = None
        if outcome.verdict is Verdict.FAILED:
            status, observed = DeliveryStatus.FAILED, str(Verdict.FAILED)
        elif now >= deadline:
            status, observed = DeliveryStatus.DEAD, str(DeliveryStatus.DEAD)
        else:
            status, observed = DeliveryStatus.PENDING, str(Verdict.RETRY)
            delay = backoff_delay(attempts, base=self._base, cap=self._cap, rng=self._rng)
            next_attempt = min(now + timedelta(seconds=delay), deadline)
            if outcome.retry_after is not None:
                next_attempt = max(next_attempt, now + timedelta(seconds=outcome.retry_after))
        await self._finish(
            unit,
            attempted_at=now,
            status=status,
            status_code=outcome.status_code,
            error=error,
            latency_ms=outcome.latency_ms,
            next_attempt_at=next_attempt,
        )
        self._observe(hook.name, observed)
        if next_attempt is not None:
            if self._next_retry is None or next_attempt < self._next_retry:
                self._next_retry = next_attempt
            log.warning(
                "webhook %s: %s attempt %d failed: %s; retrying in %.1fs",
                hook.name,
                _what(unit),
                attempts + 1,
                error,
                (next_attempt - now).total_seconds(),
            )
        else:
            log.error(
                "webhook %s: %s %s after %d attempts: %s",
                hook.name,
                _what(unit),
                "given up (failed)"
                if status is DeliveryStatus.FAILED
                else "dead (max_retry_age passed)",
                attempts + 1,
                error,
            )

    def _observe(self, webhook: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_delivery(webhook, outcome)


def _log_dispatch_failure(exc: Exception, failures: int) -> None:
    from monitor.store.engine import error_line, is_database_error

    if is_database_error(exc):
        # One line: the driver's message, not the SQL with its parameters.
        log.warning(
            "webhook dispatch failed (%d in a row): %s; will retry", failures, error_line(exc)
        )
    else:
        log.exception("webhook dispatch failed (%d in a row); will retry", failures)


def _log_delivery_failure(exc: Exception, webhook: str, delivery: str) -> None:
    from monitor.store.engine import error_line, is_database_error

    if is_database_error(exc):
        log.warning(
            "webhook %s: recording the delivery of %s failed: %s; "
            "it is retried when its claim expires",
            webhook,
            delivery,
            error_line(exc),
        )
    else:
        log.exception("webhook %s: delivering %s failed unexpectedly", webhook, delivery)
