"""Manifest media types, digests over exact bytes, and parsing (pure). Platform
selection is :mod:`monitor.registry.platforms`, which a check without platforms
never imports."""

from __future__ import annotations

import base64
import hashlib
import json
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
    "compute_digest",
    "parse_manifest",
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


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object; ManifestFormatError naming ``what`` if it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestFormatError(f"{what} is not JSON") from exc
    if not isinstance(doc, dict):
        raise ManifestFormatError(f"{what} is not a JSON object")
    return doc


def parse_manifest(body: bytes) -> dict[str, Any]:
    """Parse a manifest body; raise ManifestFormatError if it is not one."""
    doc = json_object(body, "manifest body")
    version = doc.get("schemaVersion")
    if version not in (1, 2) or isinstance(version, bool):
        raise ManifestFormatError("manifest body has no schemaVersion 1 or 2")
    return doc
