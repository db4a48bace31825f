"""Load and validate the YAML configuration (SPEC §4).

    loader     read the file (monitor.yamlsafe), ${ENV} interpolation (monitor.interpolation),
               one validation pass
    schema     the frozen models and their cross-field rules
    fields     value types: durations and bounds, cron, platforms, names, paths
    secrets    *_file secrets and CA bundles: bounded reads, read again when needed
    registries registry keys and defaults (a leaf the schema and its users share)
    resolve    watches with defaults applied (``resolve_watches(config)``), moved databases

Loading a file (``config validate``, start, reload) resolves relative paths
against the file's folder and refuses a secret or CA file that cannot be read;
durations are bounded at load to what the scheduler and ``datetime`` can hold; a
cron expression must fire. Every failure is one ``ConfigError`` naming the file
and each failing key path.
"""

from monitor.config.fields import EVENT_TYPES
from monitor.config.loader import default_config, load_config, parse_config
from monitor.config.registries import normalize_registry_key
from monitor.config.resolve import RepositoryWatch, Watch, resolve_repositories, resolve_watches
from monitor.config.schema import (
    Config,
    Defaults,
    Listen,
    LogConfig,
    RegistryConfig,
    SourceConfig,
    WatchConfig,
    WebhookConfig,
)

__all__ = [
    "EVENT_TYPES",
    "Config",
    "Defaults",
    "Listen",
    "LogConfig",
    "RegistryConfig",
    "RepositoryWatch",
    "SourceConfig",
    "Watch",
    "WatchConfig",
    "WebhookConfig",
    "default_config",
    "load_config",
    "normalize_registry_key",
    "parse_config",
    "resolve_repositories",
    "resolve_watches",
]
