"""The configuration as frozen pydantic models (SPEC §4), validated in one pass.

Cross-field rules live on the models (``password`` xor ``password_file``,
``interval`` xor ``cron``, webhook names unique and every watch's webhooks
defined); value rules are the field types of ``monitor.config.fields``.
Secret values (passwords, webhook secrets, URLs that may carry credentials,
header values, the API token, the database URL) never appear in messages or in
``repr``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, Self, overload
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WrapSerializer,
    field_validator,
    model_validator,
)
from pydantic_core.core_schema import SerializerFunctionWrapHandler

from monitor.config.fields import (
    EVENT_TYPES,
    SOURCE_NAME,
    BatchWindow,
    CaFile,
    Cron,
    EventName,
    FileGlob,
    HeaderToken,
    Image,
    Interval,
    Jitter,
    LeaseDuration,
    LongDuration,
    OptionalPath,
    OptionalText,
    Platform,
    Repository,
    SecretFile,
    SemverRange,
    SourceName,
    TagPattern,
    Timeout,
    WebhookName,
    at_least_a_minute,
    folder_of,
)
from monitor.config.messages import joined, shown
from monitor.config.paths import sqlite_url
from monitor.config.registries import (
    REGISTRY_DEFAULTS,
    normalize_registries,
    normalize_registry_key,
)
from monitor.config.secrets import read_secret
from monitor.errors import ConfigError
from monitor.registry.client import ManifestMethod, RegistrySettings

__all__ = [
    "Config",
    "Defaults",
    "HaConfig",
    "Listen",
    "LogConfig",
    "RegistryConfig",
    "SourceConfig",
    "TagsConfig",
    "WatchConfig",
    "WebhookConfig",
]

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
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*", re.ASCII)
_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://", re.ASCII)
_REQUIRED: Any = object()


def _thaw(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    # Mappings are stored as read-only MappingProxyType; serialize them as the dicts they wrap.
    return handler(dict(value))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    """Where the HTTP server listens; written ``host:port`` (``[::1]:9725``, ``:9725``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=9725, ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        hint = f"expected host:port like 127.0.0.1:9725 or [::1]:9725 (got {shown(data)})"
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


class HaConfig(_Model):
    """Replicas on one PostgreSQL database (SPEC §11): the leader's lease."""

    lease: LeaseDuration = 15.0


class RegistryConfig(_Model):
    """Per-registry settings; the key in ``registries:`` is the host (``host:port``).
    Unset knobs are the registry client's own defaults (``RegistrySettings``)."""

    username: OptionalText = None
    password: OptionalText = Field(default=None, repr=False)
    password_file: SecretFile = None
    insecure: bool = Field(default=REGISTRY_DEFAULTS.insecure)
    ca_file: CaFile = None
    max_concurrency: int = Field(default=REGISTRY_DEFAULTS.max_concurrency, ge=1)
    timeout: Timeout = Field(default=REGISTRY_DEFAULTS.timeout)
    manifest_method: ManifestMethod = Field(default=REGISTRY_DEFAULTS.manifest_method)

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
            return read_secret(self.password_file, "password_file")
        return self.password


_APPRISE_FORM = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class WebhookConfig(_Model):
    """One notification target (SPEC §6): an HTTP webhook (``url:``) or an Apprise URL
    (``apprise:``), exactly one of them."""

    name: WebhookName
    url: str | None = Field(default=None, repr=False)
    apprise: str | None = Field(default=None, repr=False)
    secret: OptionalText = Field(default=None, repr=False)
    secret_file: SecretFile = None
    events: tuple[EventName, ...] = EVENT_TYPES
    format: Literal["json", "slack", "discord"] = "json"
    timeout: Timeout = 10.0
    max_retry_age: Annotated[LongDuration, AfterValidator(at_least_a_minute)] = 86400.0
    batch: BatchWindow | None = None
    headers: Annotated[Mapping[str, str], WrapSerializer(_thaw)] = Field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
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

    @field_validator("apprise")
    @classmethod
    def _apprise_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if isinstance(info.context, dict) and info.context.get("channels") is False:
            if not _APPRISE_FORM.match(value.strip()):
                raise ValueError("expected an Apprise URL (scheme://…)")
            return value.strip()
        # Only here is Apprise imported: a config without an apprise: target never loads it.
        from monitor.apprise_urls import validate_url

        problem = validate_url(value.strip())
        if problem is not None:
            raise ValueError(problem)
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
                raise ValueError(f"invalid header name {shown(name)}")
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
        if (self.url is None) == (self.apprise is None):
            raise ValueError("expected exactly one of url (an HTTP webhook) or apprise (a URL)")
        if self.apprise is not None:
            # Apprise renders its own messages and signs nothing: these would be ignored.
            given = sorted({"format", "secret", "secret_file", "headers"} & self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)}: only for url: targets, not apprise:")
        return self

    @property
    def target(self) -> str:
        """The configured URL (``url:`` or ``apprise:``); may hold credentials."""
        return self.url if self.url is not None else str(self.apprise)

    @property
    def redacted_url(self) -> str:
        """The URL safe for logs: scheme and host only, credentials and path hidden."""
        if self.apprise is not None:
            from monitor.apprise_urls import redact_apprise_url

            return redact_apprise_url(self.apprise)
        parts = urlsplit(self.url or "")
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
            return read_secret(self.secret_file, "secret_file")
        return self.secret


class TagsConfig(_Model):
    """A repository watch's ``tags:`` (SPEC §9): which of the listed tags are watched."""

    include: TagPattern | None = None
    exclude: TagPattern | None = None
    semver: SemverRange | None = None
    max: int | None = Field(default=None, ge=1)


class _WatchSettings(_Model):
    """The keys a ``watch:`` entry and a ``sources:`` entry share; ``None`` means "use
    ``defaults``"."""

    interval: Interval | None = None
    cron: Cron | None = None
    jitter: Jitter | None = None
    platforms: tuple[Platform, ...] = ()
    # None: every configured webhook; a list: only those (``[]``: none).
    webhooks: tuple[str, ...] | None = None
    missing_after: int | None = Field(default=None, ge=1)
    failing_after: int | None = Field(default=None, ge=1)

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


class WatchConfig(_WatchSettings):
    """One ``watch:`` entry as written: a tag (``image:``) or a whole repository
    (``repository:`` with ``tags:``); ``None`` means "use ``defaults``"."""

    image: Image | None = None
    repository: Repository | None = None
    tags: TagsConfig | None = None
    newer: Literal["semver"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"image": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.image is None) == (self.repository is None):
            raise ValueError("expected exactly one of image (a tag) or repository (its tags)")
        if self.image is not None and self.tags is not None:
            raise ValueError("tags: only for repository: entries (image: names one tag)")
        if self.repository is not None and self.newer is not None:
            raise ValueError("newer: only for image: entries (a repository lists every version)")
        if self.image is not None and self.newer is not None:
            from monitor.tags import parse_version

            tag = self.image.tag
            if self.image.digest is not None or tag is None or parse_version(tag) is None:
                raise ValueError(
                    f"newer: semver needs a tag that is a version like 1.27.2 or v2.1 "
                    f"(got {shown(tag or self.image.digest)})"
                )
        return self

    @property
    def key(self) -> str:
        """What names the entry among the others: its image, or its repository."""
        return str(self.image if self.image is not None else self.repository)


class SourceConfig(_WatchSettings):
    """One ``sources:`` entry (SPEC §10): deployment files whose images are watched,
    with the other keys as the defaults of those watches.

    ``name`` is what its watches are stored under; by default it is made of the globs
    as written, so it stays the same while the entry does, wherever it sits in the list.
    """

    files: tuple[FileGlob, ...]
    name: SourceName

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: object) -> object:
        if not isinstance(data, Mapping) or "name" in data:
            return data
        files = data.get("files")
        if not isinstance(files, list | tuple) or not all(isinstance(f, str) for f in files):
            files = ()  # the field's own validation says what is wrong with it
        return {**data, "name": _default_source_name(files)}

    @field_validator("files")
    @classmethod
    def _some_files(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("expected at least one file name or glob like deploy/**/*.yaml")
        return value


def _default_source_name(files: list[str] | tuple[str, ...]) -> str:
    """``files:`` and the globs as written; shortened with a hash of them when it would
    not fit the stored name (64 visible ASCII characters)."""
    written = "files:" + ",".join(file.strip() for file in files)
    if SOURCE_NAME.match(written):
        return written
    digest = hashlib.sha256(written.encode()).hexdigest()[:8]
    safe = re.sub(r"[^\x21-\x7e]", "_", written)[:55]
    return f"{safe}~{digest}"


class Config(_Model):
    """The whole configuration; ``source`` is the file it came from (``None``: defaults)."""

    database: str = Field(default="sqlite:///regmon.db", repr=False)
    listen: Listen = Listen()
    api_token: HeaderToken = Field(default=None, repr=False)
    log: LogConfig = LogConfig()
    retention: LongDuration = 90 * 86400.0
    defaults: Defaults = Defaults()
    ha: HaConfig = HaConfig()
    docker_config: OptionalPath = None
    registries: Annotated[
        Mapping[str, RegistryConfig],
        BeforeValidator(normalize_registries),
        WrapSerializer(_thaw),
    ] = Field(default_factory=lambda: MappingProxyType({}))
    webhooks: tuple[WebhookConfig, ...] = ()
    watch: tuple[WatchConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()

    _source: str | None = PrivateAttr(default=None)

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        if not _DATABASE_URL.match(value):  # the URL may hold a password: do not echo it
            raise ValueError("expected an SQLAlchemy URL like sqlite:///regmon.db")
        return sqlite_url(value, folder_of(info))

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
            key = watch.key
            if key in seen:
                field = "image" if watch.image is not None else "repository"
                problems.append(
                    f"watch[{index}].{field}: {key} is already watched by watch[{seen[key]}]"
                )
            seen.setdefault(key, index)
            for position, name in enumerate(watch.webhooks or ()):
                if name not in names:
                    problems.append(
                        f"watch[{index}].webhooks[{position}]: unknown webhook {name!r} "
                        f"(defined: {defined})"
                    )
        problems.extend(self._source_problems(names, defined))
        if problems:
            raise ValueError(joined(problems))
        return self

    def _source_problems(self, webhooks: Mapping[str, int], defined: str) -> list[str]:
        problems: list[str] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.sources):
            if entry.name in seen:
                problems.append(
                    f"sources[{index}].name: duplicate source name {entry.name!r} "
                    f"(also sources[{seen[entry.name]}]; give one a name:)"
                )
            seen.setdefault(entry.name, index)
            for position, name in enumerate(entry.webhooks or ()):
                if name not in webhooks:
                    problems.append(
                        f"sources[{index}].webhooks[{position}]: unknown webhook {name!r} "
                        f"(defined: {defined})"
                    )
        return problems

    @property
    def source(self) -> str | None:
        return self._source

    def registry_for(self, host_key: str) -> RegistryConfig:
        """The ``registries:`` entry of ``host_key`` (aliases folded), else the defaults."""
        return self.registries.get(normalize_registry_key(host_key)) or RegistryConfig()

    def registry_settings(self, host: str) -> RegistrySettings:
        """What the registry client uses for ``host``: the one place they are built."""
        registry = self.registry_for(host)
        return RegistrySettings(
            insecure=registry.insecure,
            ca_file=registry.ca_file,
            max_concurrency=registry.max_concurrency,
            timeout=registry.timeout,
            manifest_method=registry.manifest_method,
        )

    @overload
    def webhook(self, name: str) -> WebhookConfig: ...
    @overload
    def webhook(self, name: str, default: None) -> WebhookConfig | None: ...

    def webhook(self, name: str, default: None = _REQUIRED) -> WebhookConfig | None:
        """The webhook called ``name``; ``default`` if given and there is none, else
        ``ConfigError``. The one lookup by name (dispatcher, ``webhook test``)."""
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        if default is not _REQUIRED:
            return default
        defined = ", ".join(webhook.name for webhook in self.webhooks) or "none"
        raise ConfigError(
            f"{self._source or 'config'}: unknown webhook {name!r} (defined: {defined})"
        )
