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
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn
from urllib.parse import urljoin, urlsplit

from monitor.errors import NotFound, Reason, RegistryError
from monitor.registry.manifests import (
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_SIGNED,
)
from monitor.text import clean

__all__ = [
    "ErrorBody",
    "body_media_type",
    "manifest_media_type",
    "media_type",
    "next_page_path",
    "not_found",
    "parse_error_body",
    "tag_page",
]

# Text, compiled (and cached) by ``re`` on the first tags/list page: a check never lists.
_TAG = r"[\w][\w.-]{0,127}\Z"

# RFC 6838 restricted-name, twice; parameters are cut off before matching.
_MEDIA_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\Z", re.ASCII
)


def media_type(value: str | None) -> str | None:
    """``type/subtype`` of a Content-Type, lowercased; None unless it is a valid media type."""
    if not value:
        return None
    essence = value.split(";", 1)[0].strip().lower()
    # Interned: a handful of media types, each kept in every watch's state (~90 B each).
    return sys.intern(essence) if _MEDIA_TYPE.match(essence) else None


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


class ErrorBody(NamedTuple):  # a NamedTuple: ~3 M instructions cheaper than a dataclass to create
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


def tag_page(host: str, body: bytes) -> list[str]:
    """The valid tags of one ``tags/list`` page (``"tags": null`` is an empty repository)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(Reason.PROTOCOL, f"{host}: tags/list answer is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else []
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise RegistryError(Reason.PROTOCOL, f"{host}: tags/list answer has no tag list")
    # A name that is not a valid tag cannot be referenced, so it cannot be watched.
    return [tag for tag in tags if isinstance(tag, str) and re.match(_TAG, tag, re.ASCII)]


def next_page_path(host: str, base_url: str, link: str) -> str:
    """The path of a ``Link: <…>; rel="next"`` target, which must stay on this registry."""
    base = urlsplit(base_url)
    target = urlsplit(urljoin(f"{base_url}/v2/", link))
    if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
        raise RegistryError(Reason.PROTOCOL, f"{host}: tags/list Link points at another host")
    return f"{target.path}?{target.query}" if target.query else target.path


def not_found(host: str, body: bytes) -> NoReturn:
    """What a manifest 404 with ``body`` means: NotFound, or a RegistryError when the
    answer is not the registry's (a router's ``404 page not found``)."""
    error = parse_error_body(body)
    if error.registry:
        if error.mentions("accept header"):
            raise RegistryError(
                Reason.PROTOCOL, f"{host} refused the Accept header", http_status=404
            )
        detail = "name unknown" if "NAME_UNKNOWN" in error.codes else "manifest unknown"
        raise NotFound(detail, http_status=404)
    if not error.empty:
        raise RegistryError(
            Reason.PROTOCOL,
            f"{host}: no such route (HTTP 404 without a registry error)",
            http_status=404,
        )
    raise NotFound("manifest unknown", http_status=404)
