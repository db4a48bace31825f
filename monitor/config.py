"""Load and validate the YAML configuration (SPEC §4).

Pipeline: read the file → ``monitor.yamlsafe`` (bounded safe loader that also refuses
duplicate keys) → ``${ENV}`` / ``${ENV:-default}`` interpolation on string values only
(so a secret holding YAML-special characters stays a plain string) → one
pydantic validation pass. Every failure becomes one ``ConfigError`` whose
one-line message names the file, each failing key path (``watch[2].interval``)
and what was expected. Secret values (passwords, webhook secrets, URLs that may
carry credentials, header values, the API token, the database URL) never
appear in messages or in ``repr``.

Loading a file (``config validate``, start, reload) resolves relative paths
(the SQLite database, ``*_file``, ``ca_file``, ``docker_config``) against the
file's folder, as Prometheus does, and refuses a ``password_file``,
``secret_file`` or ``ca_file`` that cannot be read, naming its key: a missing
mount is found at once, not as a day of failed deliveries. Secrets are read
again whenever they are needed, so a rotated secret is picked up without a
reload. Durations are bounded at load to what the scheduler and ``datetime``
can hold; a cron expression must fire.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapSerializer,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import SerializerFunctionWrapHandler

from monitor.domain import EventType
from monitor.durations import DURATION_HINT, format_duration, parse_duration
from monitor.errors import ConfigError
from monitor.reference import ImageReference, canonical_registry, parse_reference
from monitor.yamlsafe import load_document, read_text

__all__ = [
    "EVENT_TYPES",
    "Config",
    "Defaults",
    "Listen",
    "LogConfig",
    "RegistryConfig",
    "Watch",
    "WatchConfig",
    "WebhookConfig",
    "default_config",
    "load_config",
    "normalize_registry_key",
    "parse_config",
]

EVENT_TYPES: Final = tuple(str(kind) for kind in EventType.subscribable())
_REGISTRY_KEY = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[a-f0-9:]+\])(?::[0-9]{1,5})?\Z",
    re.ASCII,
)
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?\Z", re.ASCII)
_WEBHOOK_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z", re.ASCII)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z", re.ASCII)
# Set by regmon on every delivery; a configured value would break signing or framing.
_RESERVED_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://", re.ASCII)
_INTERPOLATION = re.compile(r"\$(\$)?\{([^}]*)\}")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\Z", re.DOTALL)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_SQLITE_URL = re.compile(r"(sqlite(?:\+[A-Za-z0-9_]+)?:///)([^?]*)(\?.*)?\Z", re.DOTALL)
_TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*", re.ASCII)

SHORTEST_INTERVAL: Final = 1.0
LONGEST_INTERVAL: Final = 365 * 86400.0
LONGEST_TIMEOUT: Final = 300.0
LONGEST: Final = 36500 * 86400.0
SECRET_LIMIT: Final = 64 * 1024
# 50,000 watches written one a line are about 3 MiB.
CONFIG_LIMIT: Final = 8 * 1024 * 1024


# --------------------------------------------------------------------------- value validators


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected {DURATION_HINT} (got {_shown(value)})")
    return parse_duration(value)  # its ValueError already says what was expected


def _positive_duration(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive duration like 30s, 5m, 1h (got {_shown(value)})")
    return seconds


def _bounded(low: float | None, high: float) -> WrapValidator:
    """Refuse a duration outside [low, high] seconds, naming the bound and the value as written."""

    def check(value: object, handler: ValidatorFunctionWrapHandler) -> float:
        seconds: float = handler(value)
        if low is not None and seconds < low:
            raise ValueError(
                f"expected a duration of at least {format_duration(low)} (got {_shown(value)})"
            )
        if seconds > high:
            raise ValueError(
                f"expected a duration of at most {format_duration(high)} (got {_shown(value)})"
            )
        return seconds

    return WrapValidator(check)


def _at_least_a_minute(value: float) -> float:
    if value < 60:
        raise ValueError("expected a duration of at least 1m")
    return value


def _jitter(value: object) -> float:
    hint = f"expected a percentage between 0% and 100% like 10% (got {_shown(value)})"
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
    hint = f"expected a cron expression with 5 fields like '*/15 * * * *' (got {_shown(value)})"
    if len(fields) != 5:
        raise ValueError(hint)
    fields[4] = _standard_day_of_week(fields[4])
    normalized = " ".join(fields)
    problem = _cron_problem(normalized)
    if problem == _NEVER:
        raise ValueError(f"expected a cron expression that fires (no date matches {_shown(value)})")
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
        return _one_line(str(exc)) or type(exc).__name__
    return None


def _platform(value: str) -> str:
    normalized = value.strip().lower()
    if not _PLATFORM.match(normalized):
        raise ValueError(
            f"expected a platform like linux/amd64 or linux/arm/v7 (got {_shown(value)})"
        )
    return normalized


def _event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(
            f"unknown event {_shown(value)} (expected one of: {', '.join(EVENT_TYPES)})"
        )
    return value


def _webhook_name(value: str) -> str:
    if not _WEBHOOK_NAME.match(value):
        raise ValueError(f"expected a name of letters, digits, '_', '.', '-' (got {_shown(value)})")
    return value


def _image(value: object) -> ImageReference:
    if not isinstance(value, str):
        raise ValueError("expected an image reference like nginx:1.27")
    return parse_reference(value.strip())  # InvalidReference is a ValueError naming the part


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


def _folder(info: ValidationInfo) -> str | None:
    """The config file's folder when loading a file; relative paths resolve against it."""
    context = info.context
    folder = context.get("folder") if isinstance(context, Mapping) else None
    return folder if isinstance(folder, str) else None


def _path(value: str | None, info: ValidationInfo) -> str | None:
    # As Prometheus does: a relative path means beside the config file, not the cwd.
    if value is None:
        return None
    path = os.path.expanduser(value)
    folder = _folder(info)
    if folder is not None and not os.path.isabs(path):
        path = os.path.normpath(os.path.join(folder, path))  # Go's filepath.Join cleans too
    return path


def _sqlite_url(url: str, folder: str | None) -> str:
    """``sqlite:///regmon.db`` → ``sqlite:////srv/regmon/regmon.db`` for a config in
    /srv/regmon; absolute (four slashes), in-memory and ``file:`` URIs stay as written."""
    match = _SQLITE_URL.match(url)
    if match is None:
        return url
    prefix, database, query = match.group(1), match.group(2), match.group(3) or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    path = unquote(database)
    expanded = os.path.expanduser(path)
    if expanded == path and (folder is None or os.path.isabs(path)):
        return url
    if not os.path.isabs(expanded) and folder is not None:
        expanded = os.path.normpath(os.path.join(folder, expanded))
    # SQLAlchemy percent-decodes the database part and ends it at '?'.
    return prefix + expanded.replace("%", "%25").replace("?", "%3F") + query


class _Unreadable(Exception):
    """Why a file named in the config cannot be read (its text is never included)."""


def _read_limited(path: str, limit: int | None) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes
    (None: only check that it opens, return ""). Anything but a regular file is
    refused, so /dev/zero or a FIFO never hangs or fills memory."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise _Unreadable("not a regular file")
            if limit is None:
                return ""
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise _Unreadable("no such file") from None
    except PermissionError:
        raise _Unreadable("permission denied") from None
    except IsADirectoryError:
        raise _Unreadable("is a directory") from None
    except OSError as exc:
        raise _Unreadable(exc.strerror or type(exc).__name__) from None
    if len(data) > limit:
        raise _Unreadable(f"larger than {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unreadable("not UTF-8 text") from None


def _secret_file(value: str | None, info: ValidationInfo) -> str | None:
    # Read at load only to find it missing early; the secret is read again when
    # needed, so a rotated file is picked up without a reload.
    if value is not None and _folder(info) is not None:
        try:
            text = _read_limited(value, SECRET_LIMIT)
        except _Unreadable as exc:
            raise ValueError(f"cannot read {value}: {exc}") from None
        if not text.strip():
            raise ValueError(f"{value} is empty")
    return value


def _ca_file(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or _folder(info) is None:
        return value
    problem = None
    try:
        _read_limited(value, None)
    except _Unreadable as exc:
        problem = str(exc)
    else:
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
        except ssl.SSLError as exc:
            problem = f"not a PEM certificate bundle ({exc.reason or exc.strerror})"
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    if problem:
        raise ValueError(f"cannot read {value}: {problem}")
    return value


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


def normalize_registry_key(host: str) -> str:
    """The key a registry is configured and looked up under: lowercase, Hub aliases folded."""
    return canonical_registry(host)


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
# What a scheduler job can be given: below 1s, checks pile up behind their own
# timeout; far beyond a year, APScheduler's trigger arithmetic overflows.
Interval = Annotated[PositiveDuration, _bounded(SHORTEST_INTERVAL, LONGEST_INTERVAL)]
# A request (to a registry or a webhook) still running after this is hung.
Timeout = Annotated[PositiveDuration, _bounded(None, LONGEST_TIMEOUT)]
# Subtracted from (retention) or added to (max_retry_age) now: datetime ends at year 9999.
LongDuration = Annotated[PositiveDuration, _bounded(None, LONGEST)]
Jitter = Annotated[float, BeforeValidator(_jitter)]
Cron = Annotated[str, AfterValidator(_cron)]
Platform = Annotated[str, AfterValidator(_platform)]
EventName = Annotated[str, AfterValidator(_event_type)]
WebhookName = Annotated[str, AfterValidator(_webhook_name)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_is_none)]
OptionalPath = Annotated[str | None, BeforeValidator(_empty_is_none), AfterValidator(_path)]
SecretFile = Annotated[OptionalPath, AfterValidator(_secret_file)]
CaFile = Annotated[OptionalPath, AfterValidator(_ca_file)]
Image = Annotated[ImageReference, PlainValidator(_image), PlainSerializer(str, return_type=str)]


def _thaw(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    # Mappings are stored as read-only MappingProxyType; serialize them as the dicts they wrap.
    return handler(dict(value))


def _read_secret(path: str, key: str) -> str:
    try:
        return _read_limited(path, SECRET_LIMIT).rstrip()
    except _Unreadable as exc:
        raise ConfigError(f"{key} {path}: cannot read secret: {exc}") from None


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    """Where the HTTP server listens; written ``host:port`` (``[::1]:9725``, ``:9725``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=9725, ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        hint = f"expected host:port like 127.0.0.1:9725 or [::1]:9725 (got {_shown(data)})"
        if isinstance(data, bool):
            raise ValueError(hint)
        if isinstance(data, int):
            return {"port": data}
        if not isinstance(data, str):
            return data
        text = data.strip()
        if text.startswith("["):
            host, bracket, port = text[1:].partition("]:")
            if not bracket or not host:
                raise ValueError(hint)
        else:
            host, colon, port = text.rpartition(":")
            if not colon or ":" in host:
                raise ValueError(hint)
            host = host or "0.0.0.0"  # noqa: S104 — ":9725" means every interface, as in Go
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise ValueError(hint)
        return {"host": host, "port": int(port)}

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Defaults(_Model):
    """Schedule and thresholds of every watch that does not set its own."""

    interval: Interval = 300.0
    cron: Cron | None = None
    jitter: Jitter = 0.10
    missing_after: int = Field(default=2, ge=1)
    failing_after: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_schedule(self) -> Self:
        if self.cron is not None and "interval" in self.model_fields_set:
            raise ValueError("interval and cron are mutually exclusive")
        return self


class RegistryConfig(_Model):
    """Per-registry settings; the key in ``registries:`` is the host (``host:port``)."""

    username: OptionalText = None
    password: OptionalText = Field(default=None, repr=False)
    password_file: SecretFile = None
    insecure: bool = False
    ca_file: CaFile = None
    max_concurrency: int = Field(default=8, ge=1)
    timeout: Timeout = 10.0
    manifest_method: Literal["head", "get"] = "head"

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are mutually exclusive")
        if self.username is None and (self.password is not None or self.password_file is not None):
            raise ValueError("username is required with password or password_file")
        return self

    def resolved_password(self) -> str | None:
        """The password, read from ``password_file`` (trailing whitespace stripped) if set.

        Raises ``ConfigError`` naming the file, never its content, if it cannot be read.
        """
        if self.password_file is not None:
            return _read_secret(self.password_file, "password_file")
        return self.password


class WebhookConfig(_Model):
    """One webhook receiver (SPEC §6)."""

    name: WebhookName
    url: str = Field(repr=False)
    secret: OptionalText = Field(default=None, repr=False)
    secret_file: SecretFile = None
    events: tuple[EventName, ...] = EVENT_TYPES
    format: Literal["json", "slack", "discord"] = "json"
    timeout: Timeout = 10.0
    max_retry_age: Annotated[LongDuration, AfterValidator(_at_least_a_minute)] = 86400.0
    headers: Annotated[Mapping[str, str], WrapSerializer(_thaw)] = Field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The URL may carry credentials (userinfo, or a Slack/Discord token in
        # the path): describe what is wrong without echoing it.
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 — raises ValueError on a bad port
        except ValueError:
            raise ValueError("expected an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value.strip()

    @field_validator("events")
    @classmethod
    def _some_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"expected at least one of: {', '.join(EVENT_TYPES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {_shown(name)}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by regmon and cannot be configured")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r}: value must be one line")
            if not _HEADER_VALUE.fullmatch(text):
                # httpx encodes header values as ASCII: anything else fails every send.
                raise ValueError(f"header {name!r}: value must be ASCII text")
        return MappingProxyType(dict(value))

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("secret and secret_file are mutually exclusive")
        return self

    @property
    def redacted_url(self) -> str:
        """The URL safe for logs: scheme and host only, credentials and path hidden."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host += f":{parts.port}"
        userinfo = "***@" if "@" in parts.netloc else ""
        rest = "/***" if parts.path.strip("/") or parts.query else ""
        return f"{parts.scheme}://{userinfo}{host}{rest}"

    def resolved_secret(self) -> str | None:
        """The signing secret, read from ``secret_file`` (trailing whitespace stripped) if set."""
        if self.secret_file is not None:
            return _read_secret(self.secret_file, "secret_file")
        return self.secret


class WatchConfig(_Model):
    """One ``watch:`` entry as written; ``None`` means "use ``defaults``"."""

    image: Image
    interval: Interval | None = None
    cron: Cron | None = None
    jitter: Jitter | None = None
    platforms: tuple[Platform, ...] = ()
    # None: every configured webhook; a list: only those (``[]``: none).
    webhooks: tuple[str, ...] | None = None
    missing_after: int | None = Field(default=None, ge=1)
    failing_after: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"image": data} if isinstance(data, str) else data

    @field_validator("platforms")
    @classmethod
    def _unique_platforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, platform in enumerate(value):
            if platform in value[:index]:
                raise ValueError(f"duplicate platform {platform!r}")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> Self:
        if self.interval is not None and self.cron is not None:
            raise ValueError("interval and cron are mutually exclusive")
        return self


@dataclass(frozen=True, slots=True)
class Watch:
    """A watch with every default applied: what the scheduler and checker use.

    Exactly one of ``interval`` (seconds) and ``cron`` (5 fields, day of week
    written as names so APScheduler 3 reads it as cron does) is set.
    ``webhooks`` names the receivers of this watch's events.
    """

    image: ImageReference
    key: str
    interval: float | None
    cron: str | None
    jitter: float
    platforms: tuple[str, ...]
    webhooks: tuple[str, ...]
    missing_after: int
    failing_after: int


def _registries(value: object) -> object:
    if not isinstance(value, Mapping):
        return value
    normalized: dict[object, object] = {}
    for key, entry in value.items():
        if not isinstance(key, str):
            raise ValueError(
                f"expected a registry host like registry.example.com:5000 (got {_shown(key)})"
            )
        host = normalize_registry_key(key)
        if not _REGISTRY_KEY.match(host):
            raise ValueError(
                f"expected a registry host like registry.example.com:5000, "
                f"without scheme or path (got {_shown(key)})"
            )
        if host in normalized:
            raise ValueError(f"registry {key!r} is configured twice (as {host!r})")
        normalized[host] = {} if entry is None else entry
    return normalized


class Config(_Model):
    """The whole configuration; ``source`` is the file it came from (``None``: defaults)."""

    database: str = Field(default="sqlite:///regmon.db", repr=False)
    listen: Listen = Listen()
    api_token: Annotated[OptionalText, AfterValidator(_header_token)] = Field(
        default=None, repr=False
    )
    log: LogConfig = LogConfig()
    retention: LongDuration = 90 * 86400.0
    defaults: Defaults = Defaults()
    docker_config: OptionalPath = None
    registries: Annotated[
        Mapping[str, RegistryConfig], BeforeValidator(_registries), WrapSerializer(_thaw)
    ] = Field(default_factory=lambda: MappingProxyType({}))
    webhooks: tuple[WebhookConfig, ...] = ()
    watch: tuple[WatchConfig, ...] = ()

    _source: str | None = PrivateAttr(default=None)

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        if not _DATABASE_URL.match(value):  # the URL may hold a password: do not echo it
            raise ValueError("expected an SQLAlchemy URL like sqlite:///regmon.db")
        return _sqlite_url(value, _folder(info))

    @field_validator("registries")
    @classmethod
    def _freeze_registries(
        cls, value: Mapping[str, RegistryConfig]
    ) -> Mapping[str, RegistryConfig]:
        return MappingProxyType(dict(value))

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        problems: list[str] = []
        names: dict[str, int] = {}
        for index, webhook in enumerate(self.webhooks):
            if webhook.name in names:
                problems.append(
                    f"webhooks[{index}].name: duplicate webhook name {webhook.name!r} "
                    f"(also webhooks[{names[webhook.name]}])"
                )
            names.setdefault(webhook.name, index)
        defined = ", ".join(names) or "none"
        seen: dict[str, int] = {}
        for index, watch in enumerate(self.watch):
            key = str(watch.image)
            if key in seen:
                problems.append(
                    f"watch[{index}].image: {key} is already watched by watch[{seen[key]}]"
                )
            seen.setdefault(key, index)
            for position, name in enumerate(watch.webhooks or ()):
                if name not in names:
                    problems.append(
                        f"watch[{index}].webhooks[{position}]: unknown webhook {name!r} "
                        f"(defined: {defined})"
                    )
        if problems:
            raise ValueError(_joined(problems))
        return self

    @property
    def source(self) -> str | None:
        return self._source

    def registry_for(self, host_key: str) -> RegistryConfig:
        """The ``registries:`` entry of ``host_key`` (aliases folded), else the defaults."""
        return self.registries.get(normalize_registry_key(host_key)) or RegistryConfig()

    def webhook(self, name: str) -> WebhookConfig:
        """The webhook called ``name``; ``ConfigError`` if there is none."""
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        defined = ", ".join(webhook.name for webhook in self.webhooks) or "none"
        raise ConfigError(
            f"{self._source or 'config'}: unknown webhook {name!r} (defined: {defined})"
        )

    def watches(self) -> tuple[Watch, ...]:
        """Every watch with ``defaults`` applied, in file order."""
        return tuple(self._resolve(watch) for watch in self.watch)

    def _resolve(self, watch: WatchConfig) -> Watch:
        defaults = self.defaults
        if watch.cron is not None or watch.interval is not None:
            interval, cron = watch.interval, watch.cron
        elif defaults.cron is not None:
            interval, cron = None, defaults.cron
        else:
            interval, cron = defaults.interval, None
        webhooks = (
            tuple(webhook.name for webhook in self.webhooks)
            if watch.webhooks is None
            else tuple(dict.fromkeys(watch.webhooks))
        )
        return Watch(
            image=watch.image,
            key=str(watch.image),
            interval=interval,
            cron=cron,
            jitter=defaults.jitter if watch.jitter is None else watch.jitter,
            platforms=watch.platforms,
            webhooks=webhooks,
            missing_after=watch.missing_after or defaults.missing_after,
            failing_after=watch.failing_after or defaults.failing_after,
        )


# --------------------------------------------------------------------------- loading


def default_config() -> Config:
    """No watches, every default: what ``regmon check`` uses without ``--config``."""
    return Config()


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, interpolate and validate the config file at ``path``."""
    source = os.fspath(path)
    text = read_text(source, max_bytes=CONFIG_LIMIT, error=ConfigError)
    folder = os.path.dirname(os.path.abspath(source))
    config = parse_config(text, source=source, folder=folder)
    _warn_if_database_moved(config, folder)
    return config


def _warn_if_database_moved(config: Config, folder: str) -> None:
    """Relative SQLite paths once followed the working directory: say where the
    database of an older layout is, rather than silently starting an empty one."""
    match = _SQLITE_URL.match(config.database)
    if match is None or not match.group(2).startswith("/"):
        return
    database = unquote(match.group(2))
    relative = os.path.relpath(database, folder)
    cwd = os.getcwd()
    if relative.startswith("..") or cwd == folder or os.path.exists(database):
        return
    before = os.path.join(cwd, relative)
    if os.path.isfile(before):
        logging.getLogger(__name__).warning(
            "%s: database %s does not exist, but %s does: relative paths now resolve "
            "against the config file's folder; move the database, or write "
            "database: sqlite:///%s",
            config.source,
            database,
            before,
            before,
        )


def parse_config(text: str, source: str = "<string>", *, folder: str | None = None) -> Config:
    """Validate the YAML document ``text``; ``source`` names it in error messages.

    ``folder`` is where the document lives on this machine: relative paths in it
    (the SQLite database, ``*_file``, ``docker_config``) resolve against it, and
    the secret and CA files it names must be readable now. Without it, paths stay
    as written and files are only read when needed.
    """
    data = _load_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    problems: list[str] = []
    data = _interpolate(data, (), problems)
    if problems:
        raise ConfigError(_one_line(f"{source}: " + _joined(problems)))
    try:
        config = Config.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        details = _joined([_describe(error) for error in exc.errors(include_url=False)])
        raise ConfigError(_one_line(f"{source}: {details}")) from None
    config._source = source
    return config


def _load_yaml(text: str, source: str) -> object:
    return load_document(text, source, error=ConfigError)


def _interpolate(value: object, loc: tuple[str | int, ...], problems: list[str]) -> object:
    if isinstance(value, str):
        return _substitute(value, loc, problems)
    if isinstance(value, dict):
        return {key: _interpolate(item, (*loc, key), problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, (*loc, index), problems) for index, item in enumerate(value)]
    return value


def _substitute(text: str, loc: tuple[str | int, ...], problems: list[str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` (default when unset or empty).

    ``$${`` is a literal ``${``.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        variable = _VARIABLE.match(match.group(2))
        if variable is None:
            problems.append(
                f"{_format_loc(loc)}: invalid interpolation, "
                "expected ${NAME} or ${NAME:-default}"
            )
            return ""
        name, default = variable.group(1), variable.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                problems.append(
                    f"{_format_loc(loc)}: environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
                return ""
            return default
        return found

    return _INTERPOLATION.sub(replace, text)


_MESSAGES: Final = {
    "missing": "a value is required",
    "extra_forbidden": "unknown key",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "mapping_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "iterable_type": "expected a list",
}
_BOUNDS: Final = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as ``key.path: what was expected``, never echoing a secret."""
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in ("value_error", "assertion_error"):
        message = str(context.get("error", error["msg"]))
        if not error["loc"] and re.match(r"[\w\[\]'.:-]+: ", message):
            return message  # cross-reference problems already name their key paths
    elif kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind in _BOUNDS:
        bound = next(iter(context.values()), "?")
        message = f"expected a number {_BOUNDS[kind]} {bound}"
    elif kind == "literal_error":
        # Only enumerations (log level, format, method) are literals: safe to echo.
        expected = context.get("expected", "one of the listed values")
        message = f"expected {expected} (got {_shown(error['input'])})"
    elif kind == "string_type":
        quoted = " (quote the value)" if isinstance(error["input"], int | float) else ""
        message = f"expected a string{quoted}"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    path = _format_loc(error["loc"])
    return f"{path}: {message}" if path else message


def _format_loc(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _KEY.match(item):
            parts.append(f".{item}" if parts else item)
        else:
            parts.append(f"[{item!r}]")
    return "".join(parts)


def _joined(problems: list[str], shown: int = 20) -> str:
    # A generated config can hold thousands of the same mistake: name the first ones.
    text = "; ".join(problems[:shown])
    return text + f"; and {len(problems) - shown} more" if len(problems) > shown else text


def _one_line(message: str) -> str:
    return " ".join(message.split()) if "\n" in message or "\r" in message else message
