"""Registry keys and defaults, shared by the schema and its users (a leaf: no schema here).

Registry hosts are folded to the key they are configured and looked up under.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from monitor.config.messages import shown
from monitor.reference import canonical_registry
from monitor.registry.client import RegistrySettings

__all__ = ["REGISTRY_DEFAULTS", "normalize_registries", "normalize_registry_key"]

# What a registry without a ``registries:`` entry gets; the registry client states them.
REGISTRY_DEFAULTS = RegistrySettings()

_REGISTRY_KEY = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[a-f0-9:]+\])(?::[0-9]{1,5})?\Z",
    re.ASCII,
)


def normalize_registry_key(host: str) -> str:
    """The key a registry is configured and looked up under: lowercase, Hub aliases folded."""
    return canonical_registry(host)


def normalize_registries(value: object) -> object:
    """The ``registries:`` mapping keyed by normalized host; ValueError for a key that
    is not a host or names a registry twice."""
    if not isinstance(value, Mapping):
        return value
    normalized: dict[object, object] = {}
    for key, entry in value.items():
        if not isinstance(key, str):
            raise ValueError(
                f"expected a registry host like registry.example.com:5000 (got {shown(key)})"
            )
        host = normalize_registry_key(key)
        if not _REGISTRY_KEY.match(host):
            raise ValueError(
                f"expected a registry host like registry.example.com:5000, "
                f"without scheme or path (got {shown(key)})"
            )
        if host in normalized:
            raise ValueError(f"registry {key!r} is configured twice (as {host!r})")
        normalized[host] = {} if entry is None else entry
    return normalized
