"""Logging: text for people, JSON (one object per line) for machines; the checks' lines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from monitor.domain import CheckResult, Reason, Status
from monitor.records import Evaluation, Event, EventType, TagState

__all__ = ["EVENT_LEVELS", "CheckLog", "setup_logging"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


# Libraries that log at DEBUG/INFO what only their developers need (every request, every
# job run, every migration step); regmon's own lines say what a user can act on.
_LIBRARIES: Final = ("apscheduler", "alembic", "aiohttp", "asyncio", "uvicorn", "sqlalchemy")
# Never lower: httpx logs every request URL at INFO, and webhook URLs carry
# secrets in their path (Slack, Discord).
_NEVER_LOWER: Final = ("httpx", "httpcore")
_OURS: Final = ("regmon", "monitor")


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """One handler on stderr; ``level`` applies to regmon's own loggers only.

    Third-party loggers stay at WARNING whatever ``level`` says (``debug``
    shows one line per check, not the libraries' internals). uvicorn's
    per-request warnings ("Invalid HTTP request received.") stay below ERROR:
    anyone who can connect could otherwise fill the log.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    wanted = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(wanted, logging.INFO))
    for name in _OURS:
        logging.getLogger(name).setLevel(wanted)
    for name in (*_LIBRARIES, *_NEVER_LOWER):
        logging.getLogger(name).setLevel(max(wanted, logging.WARNING))
    logging.getLogger("uvicorn.error").setLevel(max(wanted, logging.ERROR))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Apprise's plugins log the topics, chat ids and addresses of their URLs; the
    # Apprise notifier reports each failure itself, redacted, from what Apprise
    # captured. Never propagate, at any level (a NullHandler keeps Python's
    # last-resort handler from printing them either).
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in apprise_log.handlers):
        apprise_log.addHandler(logging.NullHandler())


# -- checks and events -----------------------------------------------------------------------

EVENT_LEVELS: Final[Mapping[EventType, int]] = {
    EventType.TAG_MISSING: logging.WARNING,
    EventType.TAG_CHANGED: logging.WARNING,
    EventType.CHECK_FAILING: logging.WARNING,
    EventType.TAG_RESTORED: logging.INFO,
    EventType.TAG_CREATED: logging.INFO,
    EventType.CHECK_RECOVERED: logging.INFO,
    EventType.REGISTRY_FAILING: logging.WARNING,
    EventType.REGISTRY_RECOVERED: logging.INFO,
}  # any other event at INFO


class CheckLog:
    """The log lines of the service's checks: what a user can act on, once.

    * DEBUG: one line per check.
    * WARNING: the first ``error`` of a watch (per streak, and the first one
      after a start), so a service that cannot reach anything says so at once
      rather than after ``failing_after`` checks; then ``check.failing``.
    * Every event at its ``EVENT_LEVELS`` level, naming what changed
      (``tag.changed`` from which digest to which).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("regmon.checks")
        self._erroring: set[str] = set()

    def record(
        self,
        key: str,
        previous: TagState | None,
        result: CheckResult,
        evaluation: Evaluation,
        *,
        failing_after: int,
    ) -> None:
        log = self._log
        if log.isEnabledFor(logging.DEBUG):
            log.debug("check %s: %s (%.0f ms)", key, _outcome(result), result.duration_ms)
        kinds = {event.type for event in evaluation.events}
        if result.status is Status.ERROR:
            if key not in self._erroring and EventType.CHECK_FAILING not in kinds:
                log.warning(
                    "check %s failed: %s; check.failing after %d consecutive errors",
                    key,
                    _outcome(result).removeprefix("error "),
                    failing_after,
                    extra=_fields(key, reason=str(result.reason or Reason.PROTOCOL)),
                )
            self._erroring.add(key)
        else:
            self._erroring.discard(key)
        for event in evaluation.events:
            covered = " (covered by the registry's event)" if event.id in evaluation.covered else ""
            log.log(
                EVENT_LEVELS.get(event.type, logging.INFO),
                "%s %s: %s%s",
                event.type,
                key if event.registry is None else event.registry.name,
                _describe(event, previous, result),
                covered,
                extra=_fields(
                    key,
                    event=str(event.type),
                    event_id=event.id,
                    previous_digest=event.previous_digest,
                    current_digest=event.current_digest,
                    reason=event.reason,
                ),
            )


def _fields(key: str, **values: object) -> dict[str, object]:
    return {"fields": {"image": key, **{k: v for k, v in values.items() if v is not None}}}


def _outcome(result: CheckResult) -> str:
    """``present sha256:…``, ``missing manifest unknown``, ``error unreachable: detail``."""
    if result.status is Status.ERROR and result.detail:
        return f"error {result.summary}: {result.detail}"
    return f"{result.status} {result.summary}"


def _describe(event: Event, previous: TagState | None, result: CheckResult) -> str:
    kind = event.type
    if kind is EventType.TAG_CHANGED:
        text = f"{event.previous_digest} -> {event.current_digest}"
        if event.platforms:
            text += f" ({', '.join(event.platforms)} changed)"
        return text
    if kind is EventType.TAG_MISSING:
        was = f" (was present at {event.previous_digest})" if event.previous_digest else ""
        return f"{result.status} {result.summary}{was}"
    if kind is EventType.TAG_CREATED:
        return f"present at {event.current_digest} (first seen)"
    if kind is EventType.VERSION_AVAILABLE:
        return f"version {event.version} is available"
    if kind is EventType.TAG_RESTORED:
        if event.same_digest is None:
            return f"present at {event.current_digest} (never seen present before)"
        if event.same_digest is False:
            return f"present again at {event.current_digest} (was {event.previous_digest})"
        return f"present again at {event.current_digest} (same digest as before)"
    if kind is EventType.CHECK_FAILING:
        errors = _errors_before(previous) + 1
        return f"{errors} consecutive errors, last {_outcome(result).removeprefix('error ')}"
    if kind is EventType.CHECK_RECOVERED:
        return f"{_outcome(result)} after {_errors_before(previous)} failed checks"
    if event.registry is not None:
        counts = f"{event.registry.errors} of {event.registry.tags} tags in error"
        held = "; per-tag check events held back" if kind is EventType.REGISTRY_FAILING else ""
        return f"{counts}{held} ({event.image}: {_outcome(result)})"
    return _outcome(result)


def _errors_before(previous: TagState | None) -> int:
    return previous.consecutive_errors if previous is not None else 0
