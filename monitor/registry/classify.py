"""What a registry's answer means, decided by its body rather than its labels (pure).

Registries label answers loosely: go-containerregistry's registry sends its JSON
error bodies as ``text/plain; charset=utf-8`` (Go's content sniffing) and echoes
back whatever Content-Type a manifest was pushed with. So a JSON ``errors[]``
body is the registry's answer whatever its Content-Type, a Content-Type is kept
only when it is a syntactically valid media type, and a manifest's type comes
from its body when the header does not name a manifest type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.registry.manifests import (
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_SIGNED,
)
from monitor.text import clean

__all__ = ["ErrorBody", "body_media_type", "manifest_media_type", "media_type", "parse_error_body"]

# RFC 6838 restricted-name, twice; parameters are cut off before matching.
_MEDIA_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\Z", re.ASCII
)


def media_type(value: str | None) -> str | None:
    """``type/subtype`` of a Content-Type, lowercased; None unless it is a valid media type."""
    if not value:
        return None
    essence = value.split(";", 1)[0].strip().lower()
    return essence if _MEDIA_TYPE.match(essence) else None


def manifest_media_type(value: str | None) -> str | None:
    """The Content-Type when it names one of the manifest types we asked for, else None."""
    essence = media_type(value)
    return essence if essence in MANIFEST_MEDIA_TYPES else None


def body_media_type(doc: Mapping[str, Any]) -> str | None:
    """A manifest's type from its own body: ``mediaType`` if valid, else its shape."""
    declared = doc.get("mediaType")
    if isinstance(declared, str):
        essence = media_type(declared)
        if essence is not None:
            return essence
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_SIGNED if "signatures" in doc else SCHEMA1
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    if isinstance(doc.get("config"), Mapping) or isinstance(doc.get("layers"), list):
        return OCI_MANIFEST
    return None


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An error answer's body. ``registry`` is True for a distribution ``errors[]`` document
    (the registry speaking), False for anything else (a router's or proxy's page)."""

    registry: bool
    codes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    empty: bool = False

    @property
    def code(self) -> str:
        return self.codes[0] if self.codes else ""

    def mentions(self, words: str) -> bool:
        return any(words in m.lower() for m in self.messages)


def parse_error_body(body: bytes) -> ErrorBody:
    """Codes and messages of a distribution error document, sanitized and capped."""
    if not body.strip():
        return ErrorBody(registry=False, empty=True)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ErrorBody(registry=False)
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors:
        return ErrorBody(registry=False)
    codes: list[str] = []
    messages: list[str] = []
    for entry in errors[:10]:
        if not isinstance(entry, dict):
            continue
        code, message = entry.get("code"), entry.get("message")
        if isinstance(code, str) and code:
            codes.append(clean(code, limit=64).upper())
        if isinstance(message, str) and message:
            messages.append(clean(message))
    return ErrorBody(registry=bool(codes), codes=tuple(codes), messages=tuple(messages))
