"""The value types of config fields, each with its validator: durations and their
bounds, jitter, cron, platforms, names, image references, paths and secret files.

Every validator raises ``ValueError`` saying what was expected; secret values
(tokens, passwords) are never echoed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from monitor.config.messages import one_line, shown
from monitor.config.paths import resolve_path
from monitor.config.secrets import check_ca_file, check_secret_file
from monitor.durations import DURATION_HINT, format_duration, parse_duration
from monitor.records import EventType
from monitor.reference import ImageReference, RepositoryName, parse_reference, parse_repository
from monitor.registry.platforms import Platform as _Platform
from monitor.tags import VersionRange, parse_range

__all__ = [
    "EVENT_TYPES",
    "LONGEST",
    "LONGEST_BATCH",
    "LONGEST_INTERVAL",
    "LONGEST_LEASE",
    "LONGEST_TIMEOUT",
    "SHORTEST_INTERVAL",
    "SHORTEST_LEASE",
    "SOURCE_NAME",
    "BatchWindow",
    "CaFile",
    "Cron",
    "Duration",
    "EventName",
    "FileGlob",
    "HeaderToken",
    "Image",
    "Interval",
    "Jitter",
    "LeaseDuration",
    "LongDuration",
    "OptionalPath",
    "OptionalText",
    "Platform",
    "PositiveDuration",
    "Repository",
    "SecretFile",
    "SemverRange",
    "SourceName",
    "TagPattern",
    "Timeout",
    "WebhookName",
    "at_least_a_minute",
    "folder_of",
]

EVENT_TYPES: Final = tuple(str(kind) for kind in EventType.subscribable())
SHORTEST_INTERVAL: Final = 1.0
LONGEST_INTERVAL: Final = 365 * 86400.0
LONGEST_TIMEOUT: Final = 300.0
LONGEST: Final = 36500 * 86400.0
LONGEST_BATCH: Final = 3600.0  # a digest held longer than an hour is a late page
# A replica's lease: renewed every third of it; a failover takes up to one lease.
SHORTEST_LEASE: Final = 1.0
LONGEST_LEASE: Final = 600.0

_WEBHOOK_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z", re.ASCII)
SOURCE_NAME = re.compile(r"[\x21-\x7e]{1,64}\Z", re.ASCII)  # fits watches.source
_TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)


# --------------------------------------------------------------------------- durations


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected {DURATION_HINT} (got {shown(value)})")
    return parse_duration(value)  # its ValueError already says what was expected


def _positive_duration(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive duration like 30s, 5m, 1h (got {shown(value)})")
    return seconds


def _bounded(low: float | None, high: float) -> WrapValidator:
    """Refuse a duration outside [low, high] seconds, naming the bound and the value as written."""

    def check(value: object, handler: ValidatorFunctionWrapHandler) -> float:
        seconds: float = handler(value)
        if low is not None and seconds < low:
            raise ValueError(
                f"expected a duration of at least {format_duration(low)} (got {shown(value)})"
            )
        if seconds > high:
            raise ValueError(
                f"expected a duration of at most {format_duration(high)} (got {shown(value)})"
            )
        return seconds

    return WrapValidator(check)


def at_least_a_minute(value: float) -> float:
    if value < 60:
        raise ValueError("expected a duration of at least 1m")
    return value


def _jitter(value: object) -> float:
    hint = f"expected a percentage between 0% and 100% like 10% (got {shown(value)})"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            number = float(text)
        except ValueError:
            raise ValueError(hint) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise ValueError(hint)
    if not 0 <= number <= 100:  # also refuses NaN
        raise ValueError(hint)
    return number / 100


# --------------------------------------------------------------------------- cron


_CRON_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_DAY_ITEM = re.compile(r"(\*|[0-7a-z]{1,3}(?:-[0-7a-z]{1,3})?)(?:/([0-9]+))?\Z")


def _cron_day(token: str) -> int | None:
    if token.isdigit():
        number = int(token)
        return number % 7 if number <= 7 else None
    return _CRON_DAYS.index(token) if token in _CRON_DAYS else None


def _standard_day_of_week(field: str) -> str:
    """Rewrite a crontab day-of-week field as day names.

    APScheduler 3's ``CronTrigger.from_crontab`` reads ``0`` as Monday (its
    issue 286); cron reads it as Sunday. Names mean the same to both, so
    numbers, ranges and steps are expanded to names; anything else is left to
    APScheduler to accept or refuse.
    """
    if field in ("*", "?"):
        return field
    days: list[int] = []
    for item in field.lower().split(","):
        match = _CRON_DAY_ITEM.match(item)
        if match is None:
            return field
        span, step_text = match.group(1), match.group(2)
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first_text, last_text = span.split("-")
            first_day, last_day = _cron_day(first_text), _cron_day(last_text)
            if first_day is None or last_day is None:
                return field
            first, last = first_day, (7 if last_text == "7" else last_day)
        else:
            single = _cron_day(span)
            if single is None:
                return field
            first, last = single, (6 if step_text else single)
        if step < 1 or first > last:
            return field
        days.extend(day % 7 for day in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(set(days)))


_NEVER: Final = "never fires"


def _cron(value: str) -> str:
    fields = value.split()
    hint = f"expected a cron expression with 5 fields like '*/15 * * * *' (got {shown(value)})"
    if len(fields) != 5:
        raise ValueError(hint)
    fields[4] = _standard_day_of_week(fields[4])
    normalized = " ".join(fields)
    problem = _cron_problem(normalized)
    if problem == _NEVER:
        raise ValueError(f"expected a cron expression that fires (no date matches {shown(value)})")
    if problem:
        raise ValueError(f"{hint}: {problem}")
    return normalized


@functools.lru_cache(maxsize=256)
def _cron_problem(expression: str) -> str | None:
    """Why APScheduler cannot use ``expression``, or None; cached because a
    never-firing expression costs a search up to year 9999 (~0.2 s)."""
    from apscheduler.triggers.cron import CronTrigger  # heavy: only when a cron is configured

    try:
        trigger = CronTrigger.from_crontab(expression, timezone="UTC")
        # Fields are ANDed (day of month and day of week alike): `0 0 30 2 *` parses
        # but has no fire time, and the watch would never be checked.
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            return _NEVER
    except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
        return one_line(str(exc)) or type(exc).__name__
    return None


# --------------------------------------------------------------------------- names and references


def _platform(value: str) -> str:
    _Platform.parse(value)  # the syntax --platform accepts; its ValueError names the value
    return value.strip().lower()


def _event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(
            f"unknown event {shown(value)} (expected one of: {', '.join(EVENT_TYPES)})"
        )
    return value


def _webhook_name(value: str) -> str:
    if not _WEBHOOK_NAME.match(value):
        raise ValueError(f"expected a name of letters, digits, '_', '.', '-' (got {shown(value)})")
    return value


def _image(value: object) -> ImageReference:
    if not isinstance(value, str):
        raise ValueError("expected an image reference like nginx:1.27")
    return parse_reference(value.strip())  # InvalidReference is a ValueError naming the part


def _repository(value: object) -> RepositoryName:
    if not isinstance(value, str):
        raise ValueError("expected a repository like ghcr.io/acme/api")
    return parse_repository(value.strip())


def _tag_pattern(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression (got {shown(value)})")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc} in {shown(value)}") from None


def _semver_range(value: object) -> VersionRange:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a version range like '>=2.0.0 <3' or '^2' (got {shown(value)})")
    try:
        return parse_range(str(value))
    except ValueError as exc:
        raise ValueError(f"{one_line(str(exc))} (got {shown(value)})") from None


def _header_token(value: str | None) -> str | None:
    # Compared with the bytes of an Authorization header: only visible ASCII can
    # arrive there intact (no spaces: they end the token; no other characters:
    # clients send UTF-8, servers decode Latin-1). Never echo the token.
    if value is not None and not _TOKEN.fullmatch(value):
        raise ValueError(
            "expected visible ASCII characters without spaces "
            "(an Authorization header cannot carry anything else)"
        )
    return value


def _source_name(value: str) -> str:
    if not SOURCE_NAME.match(value):
        raise ValueError(
            f"expected a name of up to 64 visible ASCII characters, no spaces (got {shown(value)})"
        )
    if value == "config":
        raise ValueError("'config' names the watch: list; choose another name")
    return value


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


# --------------------------------------------------------------------------- paths and files


def folder_of(info: ValidationInfo) -> str | None:
    """The config file's folder when loading a file; relative paths resolve against it."""
    context = info.context
    folder = context.get("folder") if isinstance(context, Mapping) else None
    return folder if isinstance(folder, str) else None


def _path(value: str | None, info: ValidationInfo) -> str | None:
    # As Prometheus does: a relative path means beside the config file, not the cwd.
    return None if value is None else resolve_path(value, folder_of(info))


def _glob(value: str, info: ValidationInfo) -> str:
    # Relative to the config file's folder, as every path in it; ``**`` spans folders.
    if not value.strip():
        raise ValueError("expected a file name or glob like deploy/**/*.yaml")
    if "\x00" in value:
        raise ValueError("expected a file name or glob without NUL characters")
    return resolve_path(value.strip(), folder_of(info))


def _secret_file(value: str | None, info: ValidationInfo) -> str | None:
    # Read at load only to find it missing early; the secret is read again when
    # needed, so a rotated file is picked up without a reload.
    if value is not None and folder_of(info) is not None:
        check_secret_file(value)
    return value


def _ca_file(value: str | None, info: ValidationInfo) -> str | None:
    if value is not None and folder_of(info) is not None:
        check_ca_file(value)
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
# What a scheduler job can be given: below 1s, checks pile up behind their own
# timeout; far beyond a year, APScheduler's trigger arithmetic overflows.
Interval = Annotated[PositiveDuration, _bounded(SHORTEST_INTERVAL, LONGEST_INTERVAL)]
# A request (to a registry or a webhook) still running after this is hung.
Timeout = Annotated[PositiveDuration, _bounded(None, LONGEST_TIMEOUT)]
# Subtracted from (retention) or added to (max_retry_age) now: datetime ends at year 9999.
LongDuration = Annotated[PositiveDuration, _bounded(None, LONGEST)]
# How long a webhook collects events into one delivery (``batch:``, SPEC §6).
BatchWindow = Annotated[PositiveDuration, _bounded(SHORTEST_INTERVAL, LONGEST_BATCH)]
LeaseDuration = Annotated[PositiveDuration, _bounded(SHORTEST_LEASE, LONGEST_LEASE)]
Jitter = Annotated[float, BeforeValidator(_jitter)]
Cron = Annotated[str, AfterValidator(_cron)]
Platform = Annotated[str, AfterValidator(_platform)]
EventName = Annotated[str, AfterValidator(_event_type)]
WebhookName = Annotated[str, AfterValidator(_webhook_name)]
SourceName = Annotated[str, AfterValidator(_source_name)]
FileGlob = Annotated[str, AfterValidator(_glob)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_is_none)]
HeaderToken = Annotated[OptionalText, AfterValidator(_header_token)]
OptionalPath = Annotated[str | None, BeforeValidator(_empty_is_none), AfterValidator(_path)]
SecretFile = Annotated[OptionalPath, AfterValidator(_secret_file)]
CaFile = Annotated[OptionalPath, AfterValidator(_ca_file)]
Image = Annotated[ImageReference, PlainValidator(_image), PlainSerializer(str, return_type=str)]
Repository = Annotated[
    RepositoryName, PlainValidator(_repository), PlainSerializer(str, return_type=str)
]
TagPattern = Annotated[
    re.Pattern[str],
    PlainValidator(_tag_pattern),
    PlainSerializer(lambda pattern: pattern.pattern, return_type=str),
]
SemverRange = Annotated[
    VersionRange,
    PlainValidator(_semver_range),
    PlainSerializer(lambda compiled: compiled.text, return_type=str),
]
