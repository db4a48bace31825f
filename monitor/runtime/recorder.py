"""The recorder: check results wait here in memory and are written to the store in batches.

Every evaluation of a check goes through ``add()``; the writer loop (``run()``)
writes what is pending every ``interval`` seconds, or at once when a batch is
full, in one transaction (the store's ``record_evaluations``). Each result is
prepared (``prepare``: payloads and channel names, from notify's routing) in
the event loop just before its batch goes to the worker thread, so the write
takes data only.

When the database cannot be written (locked past the busy timeout, a full
disk, a corrupt file, a server that is down) nothing is lost at first:

* the batch goes back to the front of the queue, in order, and the writer
  retries with exponential backoff (``interval`` doubled per failure, capped
  at ``backoff_cap``), logging one line per attempt, never a traceback with
  the SQL and its parameters;
* ``failure`` holds the one-line reason and ``regmon_database_up`` is 0;
  ``healthy()`` (``/readyz``) is false while it is set, and already while a
  write has waited more than ``STALL`` seconds (a lock, before the busy
  timeout gives up);
* the queue stays bounded: a result that only moves ``last_checked``
  (no event, no history row) replaces the one before it for the same watch,
  so a steady outage costs one entry per watch; beyond ``max_pending`` the
  oldest results are dropped, counted in
  ``regmon_pending_results_dropped_total`` and logged.

``close()`` (at stop) keeps trying for a bounded time and then says exactly
how many results and events could not be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from monitor.store.engine import DatabaseUnavailable, error_line, is_database_error
from monitor.store.lease import Fenced

if TYPE_CHECKING:
    from monitor.config import Watch
    from monitor.domain import CheckResult
    from monitor.metrics import Metrics
    from monitor.records import Evaluation, TagState
    from monitor.runtime.leader import Coordinator
    from monitor.store.repository import Record, Recorded

__all__ = ["BACKOFF_CAP", "MAX_PENDING", "STALL", "Pending", "Recorder"]

log = logging.getLogger("regmon")

BATCH: Final = 1000  # results that wake the writer before its interval is up
INTERVAL: Final = 0.2  # seconds a result may wait to be batched with others
BACKOFF_CAP: Final = 30.0  # seconds between retries at most while the database fails
MAX_PENDING: Final = 100_000  # results kept in memory while the database cannot be written
STALL: Final = 3.0  # seconds a write may take before the database counts as not ready
ATTEMPT_GRACE: Final = 6.0  # seconds an attempt still running at close may take (busy timeout 5 s)


@dataclass(frozen=True, slots=True)
class Pending:
    """One result waiting to be written, with the watch it came from (for its payload).

    ``version`` is the version of its state in the service's cache; ``result``
    the check it came from, evaluated again when the store refuses the write;
    ``previous`` the cached state it was evaluated on (at ``version - 1``).
    """

    evaluation: Evaluation
    watch: Watch
    version: int = 0
    result: CheckResult | None = None
    previous: TagState | None = None


def _trivial(evaluation: Evaluation) -> bool:
    # Only the tag state row changes (last_checked and the like): a later result
    # of the same watch carries all of it.
    return not evaluation.events and not evaluation.changed


def _timestamps_only(before: TagState, after: TagState) -> bool:
    """True when ``after`` differs from ``before`` in its check timestamps at most."""
    return after == replace(
        before, last_checked=after.last_checked, last_decided=after.last_decided
    )


class Recorder:
    """Pending results, the writer loop with backoff, and the database's health as writes see it."""

    def __init__(
        self,
        write: Callable[[Sequence[Record]], Recorded],
        *,
        prepare: Callable[[Evaluation, Watch], Record],
        stored_versions: Mapping[str, int] | None = None,
        on_refused: Callable[[Sequence[Pending], Mapping[str, tuple[TagState, int]]], None]
        | None = None,
        on_written: Callable[[], None] | None = None,
        coordinator: Coordinator | None = None,
        metrics: Metrics | None = None,
        batch: int = BATCH,
        interval: float = INTERVAL,
        backoff_cap: float = BACKOFF_CAP,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._write = write  # runs in a worker thread; raises on failure
        self._prepare = prepare
        # The version of each tag's state in the store as this recorder last saw it: what
        # the next write of the tag expects (compare-and-set, monitor.store.states).
        self._stored: dict[str, int] = dict(stored_versions or {})
        self._on_refused = on_refused
        self._coordinator = coordinator
        self._on_written = on_written
        self._metrics = metrics
        self._batch = batch
        self._interval = interval
        self._cap = backoff_cap
        self._max = max_pending
        self._pending: dict[int, Pending] = {}  # by arrival number: insertion order is order
        self._last: dict[str, int] = {}  # watch key -> arrival number of its latest result
        self._seq = 0
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._writing: dict[int, Pending] = {}  # the batch a worker thread is writing now
        self._write_began: float | None = None  # when the transaction in progress began
        self._failure: str | None = None
        self._failed_since: float | None = None
        self._attempts = 0
        self._retry_at = 0.0
        self.dropped = 0  # results dropped over max_pending since start
        self.dropped_events = 0
        if metrics is not None:
            metrics.observe_database(up=True)
            metrics.pending_results.set_function(lambda: len(self._pending))

    # -- state ---------------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the last write failed (one line), or None while writes succeed."""
        return self._failure

    def healthy(self, stall: float = STALL) -> bool:
        """False while writes fail, or while one has taken over ``stall`` seconds (a lock)."""
        began = self._write_began
        if self._failure is not None:
            return False
        return began is None or time.monotonic() - began <= stall

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- input ---------------------------------------------------------------------------

    def add(
        self,
        evaluation: Evaluation,
        watch: Watch,
        *,
        version: int = 0,
        result: CheckResult | None = None,
        previous: TagState | None = None,
    ) -> None:
        key = evaluation.state.image
        last = self._last.get(key)
        if last is not None and _trivial(self._pending[last].evaluation):
            del self._pending[last]
        self._seq += 1
        self._pending[self._seq] = Pending(evaluation, watch, version, result, previous)
        self._last[key] = self._seq
        self._enforce_cap()
        if len(self._pending) >= self._batch and self._failure is None:
            self._wakeup.set()

    def _enforce_cap(self) -> None:
        over = len(self._pending) - self._max
        if over <= 0:
            return
        events = 0
        for _ in range(over):
            seq = next(iter(self._pending))
            item = self._pending.pop(seq)
            key = item.evaluation.state.image
            if self._last.get(key) == seq:
                del self._last[key]
            events += len(item.evaluation.events)
        first = self.dropped == 0
        self.dropped += over
        self.dropped_events += events
        if self._metrics is not None:
            self._metrics.pending_dropped.inc(over)
        if first:
            log.error(
                "database: %d results wait to be written, the most kept in memory; "
                "dropping the oldest (counted in regmon_pending_results_dropped_total)",
                self._max,
            )

    # -- writing -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer loop (``close()`` ends it)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="regmon-writer")

    async def _run(self) -> None:
        """The writer loop: write what is pending every interval; back off while writes fail."""
        while not self._closing:
            wait = self._interval
            if self._failure is not None:
                wait = max(self._retry_at - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._closing or (self._failure is not None and time.monotonic() < self._retry_at):
                continue
            with contextlib.suppress(DatabaseUnavailable):
                await self.flush()

    async def flush(self) -> None:
        """Write everything pending, ``batch`` results per transaction; ``DatabaseUnavailable``
        if a write failed.

        What was not written stays pending, in order, for the next attempt. Bounded
        transactions keep SQLite's WAL (and a PostgreSQL transaction) small after an
        outage, when a large backlog is written at once.
        """
        async with self._lock:
            if not self._pending:
                return
            if self._coordinator is not None and not self._coordinator.is_leader():
                return  # only the leader writes; what is pending waits for the lead
            items = list(self._pending.items())
            self._pending, self._last = {}, {}
            written = 0
            try:
                for start in range(0, len(items), self._batch):
                    self._writing = dict(items[start:])
                    self._write_began = time.monotonic()
                    pendings = [pending for _, pending in items[start : start + self._batch]]
                    chunk = self._records(pendings)
                    # Shielded: a cancelled flush must not re-queue a chunk that the
                    # thread goes on to commit (its events would then be written twice).
                    recorded = await asyncio.shield(asyncio.to_thread(self._write, chunk))
                    written += len(chunk)
                    self._settle(pendings, chunk, recorded)
            except Fenced as exc:
                # The lead was lost under this write: nothing of it was written. What is
                # pending waits: written if this replica leads again with nobody in between,
                # dropped (``restart``) if another replica led meanwhile.
                self._requeue(dict(items[written:]))
                log.warning("%s; %d results wait for the lead", exc, len(self._pending))
                return
            except Exception as exc:
                self._requeue(dict(items[written:]))
                self._failed(exc)
                raise DatabaseUnavailable(self._describe()) from None
            finally:
                self._writing = {}
                self._write_began = None
                if written and self._on_written is not None:
                    self._on_written()
            self._succeeded(written)

    async def restart(self, stored_versions: Mapping[str, int]) -> None:
        """Take the lead on the store's state: what is pending was checked before another
        replica led, on states it has moved on since, so it is dropped (that replica checked
        the same tags itself; the store has what it found)."""
        async with self._lock:
            dropped = list(self._pending.values())
            self._pending, self._last = {}, {}
            self._stored = dict(stored_versions)
        if dropped:
            log.warning(
                "%d check results (%d events) from before another replica led were dropped; "
                "the store has that replica's findings",
                len(dropped),
                sum(len(p.evaluation.events) for p in dropped),
            )

    async def flush_now(self, wait: float) -> None:
        """Flush for a caller that waits (``POST …/check``): fail fast while the database fails.

        ``DatabaseUnavailable`` at once when the last write failed (the writer
        retries on its own schedule), or when this write takes over ``wait``
        seconds (it goes on in the background; the result is not lost).
        """
        if self._failure is not None:
            raise DatabaseUnavailable(self._describe())
        flushing = asyncio.ensure_future(self.flush())
        try:
            await asyncio.wait_for(asyncio.shield(flushing), wait)
        except TimeoutError:
            flushing.add_done_callback(_consume)
            raise DatabaseUnavailable(
                f"database write did not finish within {wait:g}s (locked?); "
                "the result is kept and written when the database answers"
            ) from None

    async def close(self, grace: float) -> None:
        """End the writer loop, then write what is pending, retrying for up to ``grace``
        seconds; then say exactly what could not be written."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task  # ends at its next turn; a write in progress finishes first
            self._task = None
        deadline = time.monotonic() + grace
        lost_lead = False
        while self._pending:
            if self._coordinator is not None and not self._coordinator.is_leader():
                lost_lead = True  # flush() writes nothing: another replica leads (or will)
                break
            flushing = asyncio.ensure_future(self.flush())
            done, _ = await asyncio.wait({flushing}, timeout=max(deadline - time.monotonic(), 0))
            if not done:
                # One attempt is bounded by the driver (SQLite's busy timeout): let it end,
                # so what is reported below is what was really not written.
                done, _ = await asyncio.wait({flushing}, timeout=ATTEMPT_GRACE)
                if not done:
                    flushing.add_done_callback(_consume)
                elif flushing.exception() is None:
                    continue
                break
            if flushing.exception() is None:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(max(self._retry_at - time.monotonic(), 0.05), left))
        unwritten = [*self._writing.values(), *self._pending.values()]
        if unwritten or self.dropped:
            events = sum(len(p.evaluation.events) for p in unwritten)
            log.error(
                "regmon stopping: %d check results (%d events) could not be written to the "
                "database and are lost%s: %s",
                len(unwritten) + self.dropped,
                events + self.dropped_events,
                f" ({self.dropped} of them dropped earlier over the cap)" if self.dropped else "",
                self._failure
                or ("this replica no longer leads" if lost_lead else None)
                or f"the database did not answer within {grace:g}s",
            )

    def _records(self, pendings: Sequence[Pending]) -> list[Record]:
        """Prepared records, each expecting the version the one before it leaves behind."""
        running: dict[str, int] = {}
        records = []
        for pending in pendings:
            key = pending.evaluation.state.image
            record = self._prepare(pending.evaluation, pending.watch)
            expected = running.get(key, self._stored.get(key, 0))
            # The store holds ``previous`` exactly when it holds its version (CAS).
            touch = (
                pending.previous is not None
                and expected == pending.version - 1
                and _timestamps_only(pending.previous, pending.evaluation.state)
            )
            records.append(replace(record, expected=expected, version=pending.version, touch=touch))
            running[key] = pending.version
        return records

    def _settle(
        self, pendings: Sequence[Pending], records: Sequence[Record], recorded: Recorded
    ) -> None:
        refused = {id(record) for record in recorded.refused}
        stale = []
        for pending, record in zip(pendings, records, strict=True):
            if id(record) in refused:
                stale.append(pending)
            else:
                self._stored[record.image] = record.version
        for key in {pending.evaluation.state.image for pending in stale}:
            current = recorded.current.get(key)
            self._stored[key] = current[1] if current is not None else 0
        if stale:
            log.warning(
                "%d results were evaluated on a stale state (another writer); "
                "evaluating them again on the stored one",
                len(stale),
            )
            if self._on_refused is not None:
                self._on_refused(stale, recorded.current)

    # -- bookkeeping ---------------------------------------------------------------------

    def _requeue(self, batch: dict[int, Pending]) -> None:
        newer = self._pending
        self._pending = batch
        self._pending.update(newer)  # arrival numbers grow: still in order
        self._last = {p.evaluation.state.image: seq for seq, p in self._pending.items()}
        self._enforce_cap()

    def _failed(self, exc: Exception) -> None:
        expected = is_database_error(exc)
        reason = error_line(exc) if expected else repr(exc)
        now = time.monotonic()
        self._attempts += 1
        delay = min(self._cap, self._interval * 2.0 ** min(self._attempts, 30))
        self._retry_at = now + delay
        first = self._failure is None
        self._failure = reason
        if first:
            self._failed_since = now
            if self._metrics is not None:
                self._metrics.observe_database(up=False)
            # A bug rather than the database: its traceback is the one thing that helps.
            log.error(
                "database write failed: %s; %d results kept, retrying in %.1fs",
                reason,
                len(self._pending),
                delay,
                exc_info=None if expected else exc,
            )
        else:
            log.warning(
                "database write failed again (attempt %d): %s; %d results kept, retrying in %.1fs",
                self._attempts,
                reason,
                len(self._pending),
                delay,
            )

    def _succeeded(self, written: int) -> None:
        if self._failure is None:
            return
        since = self._failed_since or time.monotonic()
        log.info(
            "database writable again after %.0fs: wrote %d pending results",
            time.monotonic() - since,
            written,
        )
        self._failure = None
        self._failed_since = None
        self._attempts = 0
        if self._metrics is not None:
            self._metrics.observe_database(up=True)

    def _describe(self) -> str:
        return f"database unavailable: {self._failure or 'write failed'}"


def _consume(task: asyncio.Future[None]) -> None:
    # The background flush reports its own failure; only keep asyncio from warning about it.
    if not task.cancelled():
        task.exception()
