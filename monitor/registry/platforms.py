"""Platform selection (pure): which platforms an index or an image config states, and
which manifest serves each platform asked for (SPEC §2). Only a check with platforms
imports it."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.registry.manifests import (
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPES,
    OCI_MANIFEST,
    ManifestFormatError,
    json_object,
)

__all__ = [
    "IMAGE_MANIFEST_MEDIA_TYPES",
    "ConfigRef",
    "IndexEntry",
    "Platform",
    "config_platform",
    "image_config",
    "index_entries",
    "is_index",
    "match_platforms",
    "schema1_platform",
    "select_platforms",
]

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}
_PLATFORM_RE = re.compile(r"[a-z0-9_.-]+(/[a-z0-9_.-]+){1,2}", re.ASCII)
# Windows images differ by OS build, so `windows/amd64/10.0.17763` names an os.version.
_OS_VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+)+", re.ASCII)
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# BuildKit marks attestation (and other non-image) entries with this annotation.
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"


@dataclass(frozen=True, slots=True)
class Platform:
    """``os/architecture[/variant]``, normalised as regclient does.

    Normalisation (the same for what is asked and what an image says): ``x86_64``
    and ``x86-64`` are ``amd64``, whose ``v1`` variant is no variant; ``aarch64`` is
    ``arm64``, whose ``v8`` is no variant; ``arm`` without a variant is ``arm/v7``;
    ``armhf`` is ``arm/v7``, ``armel`` ``arm/v6``, ``i386`` ``386``, ``macos`` ``darwin``.
    ``os_version`` is only set for Windows (``windows/amd64/10.0.17763``).
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/arm64`` or ``linux/arm/v7`` (any case, blanks around ignored);
        raise ValueError naming the input. The one platform syntax: ``--platform`` and
        the config's ``platforms:`` both use it."""
        if not _PLATFORM_RE.fullmatch(text.strip().lower()):
            got = repr(text)
            got = got if len(got) <= 60 else got[:57] + "..."
            raise ValueError(f"expected a platform like linux/amd64 or linux/arm/v7 (got {got})")
        text = text.strip()
        parts = text.lower().split("/")
        third = parts[2] if len(parts) > 2 else ""
        if parts[0] == "windows" and _OS_VERSION_RE.fullmatch(third):
            return cls.normalized(parts[0], parts[1], os_version=third)
        return cls.normalized(parts[0], parts[1], third)

    @classmethod
    def normalized(
        cls, os: str, architecture: str, variant: str = "", os_version: str = ""
    ) -> Platform:
        os = os.lower()
        os = "darwin" if os == "macos" else os
        architecture = architecture.lower()
        variant = variant.lower()
        arch = _ARCH_ALIASES.get(architecture, architecture)
        if arch == "armhf":
            arch, variant = "arm", "v7"
        elif arch == "armel":
            arch, variant = "arm", "v6"
        if arch == "amd64" and variant == "v1":
            variant = ""
        elif arch == "arm64" and variant in ("8", "v8"):
            variant = ""
        elif arch == "arm" and variant in ("", "7"):
            variant = "v7"
        elif arch == "arm" and variant.isdigit():
            variant = "v" + variant
        return cls(os, arch, variant, os_version if os == "windows" else "")

    def matches(self, wanted: Platform, wanted_variant_given: bool) -> bool:
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if wanted.os_version and not (
            self.os_version == wanted.os_version
            or self.os_version.startswith(wanted.os_version + ".")
        ):
            return False
        return not wanted_variant_given or self.variant == wanted.variant

    def __str__(self) -> str:
        last = self.os_version or self.variant
        return "/".join(p for p in (self.os, self.architecture, last) if p)


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _platform_of(doc: Mapping[str, Any]) -> Platform | None:
    """The platform an index entry's ``platform`` or an image config states, if any."""
    os_, arch = _text(doc, "os"), _text(doc, "architecture")
    if not os_ or not arch or "unknown" in (os_, arch):
        return None
    return Platform.normalized(os_, arch, _text(doc, "variant"), _text(doc, "os.version"))


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One ``manifests[]`` entry that may be a platform: stated, or to be looked up."""

    digest: str
    platform: Platform | None  # None: the entry states none; its own config decides
    media_type: str = ""


def index_entries(index: Mapping[str, Any]) -> list[IndexEntry]:
    """The entries of an index that are images; attestations never are."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ManifestFormatError("index has no manifests list")
    found: list[IndexEntry] = []
    for entry in manifests:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise ManifestFormatError("index entry without a digest")
        annotations = entry.get("annotations")
        if isinstance(annotations, dict) and REFERENCE_TYPE_ANNOTATION in annotations:
            continue
        plat = entry.get("platform")
        media_type = _text(entry, "mediaType")
        if isinstance(plat, dict):
            stated = _platform_of(plat)
            if stated is not None:
                found.append(IndexEntry(entry["digest"], stated, media_type))
            continue  # unknown/unknown: BuildKit attestation manifests
        found.append(IndexEntry(entry["digest"], None, media_type))
    return found


def is_index(doc: Mapping[str, Any], media_type: str | None) -> bool:
    kind = _text(doc, "mediaType") or media_type or ""
    return kind in INDEX_MEDIA_TYPES or (not kind and isinstance(doc.get("manifests"), list))


@dataclass(frozen=True, slots=True)
class ConfigRef:
    digest: str
    size: int


def image_config(doc: Mapping[str, Any]) -> ConfigRef | None:
    """The config blob of an image manifest; None when the manifest is not an image
    (an artifact: Helm chart, signature, SBOM...), which then has no platform."""
    config = doc.get("config")
    if not isinstance(config, dict) or _text(config, "mediaType") not in IMAGE_CONFIG_MEDIA_TYPES:
        return None
    digest, size = config.get("digest"), config.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise ManifestFormatError("image config has no sha256 digest")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestFormatError("image config has no size")
    return ConfigRef(digest, size)


def config_platform(body: bytes) -> Platform | None:
    """The platform an image config blob states; None if it states none."""
    return _platform_of(json_object(body, "image config"))


def schema1_platform(doc: Mapping[str, Any]) -> Platform | None:
    """Schema1 states its architecture in the manifest; ``os`` is in the newest
    history entry's v1Compatibility (linux when absent, as docker assumes)."""
    arch = _text(doc, "architecture")
    if not arch:
        return None
    compat: Mapping[str, Any] = {}
    history = doc.get("history")
    if isinstance(history, list) and history and isinstance(history[0], dict):
        with contextlib.suppress(ValueError, TypeError, RecursionError):
            parsed = json.loads(history[0].get("v1Compatibility") or "{}")
            compat = parsed if isinstance(parsed, dict) else {}
    os_ = _text(compat, "os") or "linux"
    return _platform_of({**compat, "os": os_, "architecture": arch})


def match_platforms(
    found: Sequence[tuple[Platform, str]], wanted: Sequence[str]
) -> dict[str, str | None]:
    """Map each wanted platform (as written) to the first matching digest, or None."""
    result: dict[str, str | None] = {}
    for text in wanted:
        want = Platform.parse(text)
        variant_given = (text.count("/") >= 2 and not want.os_version) or (
            want.architecture == "arm"
        )
        result[text] = next(
            (digest for plat, digest in found if plat.matches(want, variant_given)), None
        )
    return result


def select_platforms(index: Mapping[str, Any], wanted: Sequence[str]) -> dict[str, str | None]:
    """Map each wanted platform to the first index entry that states it, or None."""
    stated = [(e.platform, e.digest) for e in index_entries(index) if e.platform is not None]
    return match_platforms(stated, wanted)
