"""Apprise URLs: redaction and validation, for the config loader and the notifier.

Kept apart from ``monitor.notify.apprise`` (the sending side) so that the config
can check and redact an ``apprise:`` URL without importing the notification
layer. ``apprise`` itself is imported only when a URL is validated, or when a
host must be told from a token.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

__all__ = [
    "DETAIL",
    "MASK",
    "apprise_asset",
    "apprise_secrets",
    "redact_apprise_url",
    "scrub",
    "split_url",
    "validate_url",
]

DETAIL: Final = 200  # characters of Apprise's own words kept in an error text
MASK: Final = "***"
_MIN_SECRET: Final = 3  # shorter URL parts are not masked in quoted text ("to", "id")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$", re.I)
_URL_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*)://\S+", re.I)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(
    rf"^(?:{_LABEL}\.)*{_LABEL}$|^\d{{1,3}}(?:\.\d{{1,3}}){{3}}$|^\[[0-9a-f:.]+\]$", re.I
)
_IP_OR_LOCAL = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|^\[[0-9a-f:.]+\]$|^localhost$", re.I)


# -- redaction ------------------------------------------------------------------------------


def split_url(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme, userinfo, hostport, rest)`` of ``scheme://[userinfo@]hostport[/…|?…]``."""
    scheme, sep, remainder = url.strip().partition("://")
    if not sep or not _SCHEME.match(scheme):
        return None
    cut = min((i for i in (remainder.find(c) for c in "/?#") if i >= 0), default=len(remainder))
    netloc, rest = remainder[:cut], remainder[cut:]
    userinfo, at, hostport = netloc.rpartition("@")
    return scheme.lower(), userinfo if at else "", hostport, rest


def _host_and_port(hostport: str) -> tuple[str, str]:
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else ("", "", "")
    if not colon or not port.isdigit() or not port.isascii():
        return hostport, ""
    return host, port


@functools.lru_cache(maxsize=256)
def _apprise_shows_host(url: str, host: str) -> bool:
    """Whether Apprise's privacy form of ``url`` keeps ``host`` as it is.

    Apprise knows, per service, which URL parts are private: in ``pbul://o.abc…``
    or ``pover://USER@TOKEN`` the "host" is a token, and its privacy form masks it
    (``o...c``). A URL Apprise cannot use keeps only an address (``_IP_OR_LOCAL``).
    """
    import apprise

    try:
        plugin = apprise.Apprise.instantiate(url, asset=apprise_asset(), suppress_exceptions=False)
        private = plugin.url(privacy=True) if plugin is not None else None  # type: ignore[no-untyped-call]
    except Exception:
        private = None
    if not isinstance(private, str):
        return bool(_IP_OR_LOCAL.match(host))
    parts = split_url(private)
    return parts is not None and _host_and_port(parts[2])[0].lower() == host.lower()


def _shown_host(hostport: str, url: str) -> str:
    """``hostport`` if it is a host name or address that Apprise does not hide, else a mask:
    in ``tgram://``, ``slack://``, ``discord://``, ``pbul://`` and others the "host" is a
    token."""
    host, port = _host_and_port(hostport)
    if host and _HOST.match(host) and _apprise_shows_host(url, host):
        return host + (f":{port}" if port else "")
    return MASK


def redact_apprise_url(url: str) -> str:
    """``scheme://***@host:port/***``: the URL with userinfo, path and query masked, and the
    host masked too unless it is a host name or address (safe for logs, metrics, the API)."""
    parts = split_url(url)
    if parts is None:
        return MASK
    scheme, userinfo, hostport, rest = parts
    shown = f"{scheme}://"
    if userinfo:
        shown += f"{MASK}@"
    shown += _shown_host(hostport, url) if hostport else ""
    if rest.strip("/?#"):
        shown += f"/{MASK}"
    return shown


def apprise_secrets(url: str) -> list[str]:
    """Every part of ``url`` that may be secret, longest first (raw and unquoted)."""
    parts = split_url(url)
    if parts is None:
        return [url] if len(url) >= _MIN_SECRET else []
    _, userinfo, hostport, rest = parts
    found = [userinfo, *userinfo.split(":")]
    if _shown_host(hostport, url) == MASK:
        found += [hostport, *hostport.split(":")]
    path, _, query = rest.partition("?")
    found += [segment for segment in re.split(r"[/#]", path)]
    for key, value in parse_qsl(query.partition("#")[0], keep_blank_values=True):
        found += [value, *value.split(",")]
        if key[:1] in "+-:":  # Apprise's header (+), payload (-, :) arguments: names too
            found.append(key[1:])
    found += [unquote(text) for text in list(found)]
    return sorted({t for t in found if len(t) >= _MIN_SECRET}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` on one line, with URLs and every secret part of ``url`` masked, capped."""
    line = " ".join(text.split())
    line = _URL_IN_TEXT.sub(lambda match: f"{match.group(1)}://{MASK}", line)
    for secret in apprise_secrets(url):
        line = line.replace(secret, MASK)
    return line[:DETAIL]


# -- validation -----------------------------------------------------------------------------


def validate_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (one line, no secret), or ``None`` if it can.

    For the config loader: an unsupported scheme or a URL its plugin refuses is
    a config error, found at load rather than at the first event.
    """
    import apprise
    from apprise.manager_plugins import NotificationManager

    parts = split_url(url)
    if parts is None:
        return f"not an Apprise URL (expected scheme://…): {redact_apprise_url(url)}"
    scheme = parts[0]
    if scheme not in NotificationManager():  # type: ignore[no-untyped-call]
        return (
            f"{scheme}:// is not a service Apprise {apprise.__version__} supports "
            "(see https://github.com/caronc/apprise/wiki)"
        )
    try:
        # Raising, Apprise says why in the exception; logged lines would be shared with
        # sends running on other threads.
        plugin = apprise.Apprise.instantiate(url, asset=apprise_asset(), suppress_exceptions=False)
    except Exception as exc:
        why = scrub(str(exc), url) or type(exc).__name__
        return f"Apprise cannot use this {scheme}:// URL {redact_apprise_url(url)}: {why}"
    if plugin is None:
        return f"Apprise cannot parse this {scheme}:// URL {redact_apprise_url(url)}"
    return None


def apprise_asset() -> Any:
    import apprise

    # No persistent store on disk, and Apprise's own log lines in privacy mode.
    return apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
