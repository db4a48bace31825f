"""Mask a webhook's credentials in text derived from a receiver's answer.

A receiver may quote what it was sent: an error page that echoes the
``Authorization`` header carries ``base64(user:password)`` of the URL's
userinfo; a Slack or Discord URL carries its token in the path; a URL may
carry ``?token=…``. Everything regmon shows of an answer (log lines,
``deliveries.last_error``, ``regmon webhook test``) goes through ``mask``.

    secrets = webhook_secrets(hook.url, secret=signing_secret, headers=hook.headers)
    mask(text, secrets)
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "mask", "webhook_secrets"]

MASK: Final = "***"
_MIN_SECRET: Final = 4  # shorter values are masked in their encoded forms only
_MIN_SEGMENT: Final = 8  # path segments this long may be tokens (Slack, Discord)


def webhook_secrets(
    url: str, *, secret: str | None = None, headers: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Every form in which the credentials of a webhook may come back, longest first.

    The URL's userinfo (as written, unquoted, ``user:password`` and its Basic
    base64 forms), its path and long path segments, its query and each query
    value, the signing ``secret`` (with and without ``whsec_``) and the values
    of configured ``headers``.
    """
    parts = urlsplit(url)
    found: list[str] = []
    raw_user, _, raw_password = parts.netloc.rpartition("@")[0].partition(":")
    for raw in (raw_user, raw_password):
        found += [raw, unquote(raw)]
    if "@" in parts.netloc:
        pair = f"{unquote(raw_user)}:{unquote(raw_password)}".encode()
        standard = base64.b64encode(pair).decode()
        urlsafe = base64.urlsafe_b64encode(pair).decode()
        found += [standard, urlsafe, standard.rstrip("="), urlsafe.rstrip("=")]
    path = parts.path.strip("/")
    found += [path, unquote(path)]
    found += [seg for seg in parts.path.split("/") if len(seg) >= _MIN_SEGMENT]
    found += [parts.query, unquote(parts.query)]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if secret:
        found += [secret, secret.removeprefix("whsec_")]
    found += list((headers or {}).values())
    forms = {text for text in found if len(text) >= _MIN_SECRET}
    # JSON writers may escape "/" (base64 and paths have them).
    forms |= {text.replace("/", "\\/") for text in forms if "/" in text}
    return tuple(sorted(forms, key=len, reverse=True))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
