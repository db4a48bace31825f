"""Manifest media types, digests over exact bytes, and platform selection (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEPT_HEADER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "SCHEMA1",
    "SCHEMA1_SIGNED",
    "ManifestFormatError",
    "Platform",
    "compute_digest",
    "parse_manifest",
    "select_platforms",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"

# All six, always: without the OCI manifest type registry:2 answers 404 for an
# OCI image (a false "missing"); without the list types it silently returns a
# child manifest and its digest instead of the index.
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    SCHEMA1_SIGNED,
    SCHEMA1,
)
ACCEPT_HEADER = ", ".join(MANIFEST_MEDIA_TYPES)
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class ManifestFormatError(ValueError):
    """A body that is not a manifest of a kind we know."""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compute_digest(body: bytes, media_type: str | None) -> str:
    """``sha256:<hex>`` of a manifest as the registry computes it.

    Signed schema1 manifests are the exception: the digest covers the JWS
    payload (body cut at ``formatLength`` plus ``formatTail``), not the body,
    which changes on every request because the signature is made anew.
    """
    payload = body
    if media_type == SCHEMA1_SIGNED or (media_type is None and _is_signed_schema1(body)):
        payload = _schema1_payload(body)
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _is_signed_schema1(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("schemaVersion") == 1
        and isinstance(doc.get("signatures"), list)
    )


def _schema1_payload(body: bytes) -> bytes:
    try:
        doc = json.loads(body)
        protected = json.loads(_b64url_decode(doc["signatures"][0]["protected"]))
        length = int(protected["formatLength"])
        tail = _b64url_decode(protected["formatTail"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ManifestFormatError("schema1 manifest has no readable JWS signature") from exc
    if not 0 < length <= len(body):
        raise ManifestFormatError("schema1 manifest formatLength is out of range")
    return body[:length] + tail


def parse_manifest(body: bytes) -> dict[str, Any]:
    """Parse a manifest body; raise ManifestFormatError if it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestFormatError("manifest body is not JSON") from exc
    if not isinstance(doc, dict):
        raise ManifestFormatError("manifest body is not a JSON object")
    version = doc.get("schemaVersion")
    if version not in (1, 2) or isinstance(version, bool):
        raise ManifestFormatError("manifest body has no schemaVersion 1 or 2")
    return doc


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}
_PLATFORM_RE = re.compile(r"[a-z0-9_.-]+(/[a-z0-9_.-]+){1,2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Platform:
    """``os/architecture[/variant]``, normalised as regclient does."""

    os: str
    architecture: str
    variant: str = ""

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
        return cls.normalized(parts[0], parts[1], parts[2] if len(parts) > 2 else "")

    @classmethod
    def normalized(cls, os: str, architecture: str, variant: str = "") -> Platform:
        os = "darwin" if os == "macos" else os
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
        return cls(os, arch, variant)

    def matches(self, wanted: Platform, wanted_variant_given: bool) -> bool:
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return not wanted_variant_given or self.variant == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _entries(index: Mapping[str, Any]) -> Iterable[tuple[Platform, str]]:
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ManifestFormatError("index has no manifests list")
    for entry in manifests:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise ManifestFormatError("index entry without a digest")
        plat = entry.get("platform")
        if not isinstance(plat, dict):
            # No platform: ggcr assumes linux/amd64.
            yield Platform("linux", "amd64"), entry["digest"]
            continue
        os_, arch = str(plat.get("os", "")), str(plat.get("architecture", ""))
        if os_ == "unknown" or arch == "unknown":
            continue  # BuildKit attestation manifests
        yield Platform.normalized(os_, arch, str(plat.get("variant", ""))), entry["digest"]


def select_platforms(index: Mapping[str, Any], wanted: Sequence[str]) -> dict[str, str | None]:
    """Map each wanted platform (as written) to the first matching child digest, or None."""
    entries = list(_entries(index))
    found: dict[str, str | None] = {}
    for text in wanted:
        want = Platform.parse(text)
        variant_given = text.count("/") >= 2 or want.architecture == "arm"
        found[text] = next(
            (digest for plat, digest in entries if plat.matches(want, variant_given)), None
        )
    return found
