"""Paths in a config file resolve against the config file's folder, as Prometheus does (pure)."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

__all__ = ["SQLITE_URL", "resolve_path", "sqlite_url"]

SQLITE_URL = re.compile(r"(sqlite(?:\+[A-Za-z0-9_]+)?:///)([^?]*)(\?.*)?\Z", re.DOTALL)


def resolve_path(value: str, folder: str | None) -> str:
    """``~`` expanded; relative to ``folder`` (when given) rather than the cwd."""
    path = os.path.expanduser(value)
    if folder is not None and not os.path.isabs(path):
        path = os.path.normpath(os.path.join(folder, path))  # Go's filepath.Join cleans too
    return path


def sqlite_url(url: str, folder: str | None) -> str:
    """``sqlite:///regmon.db`` → ``sqlite:////srv/regmon/regmon.db`` for a config in
    /srv/regmon; absolute (four slashes), in-memory and ``file:`` URIs stay as written."""
    match = SQLITE_URL.match(url)
    if match is None:
        return url
    prefix, database, query = match.group(1), match.group(2), match.group(3) or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    path = unquote(database)
    expanded = os.path.expanduser(path)
    if expanded == path and (folder is None or os.path.isabs(path)):
        return url
    if not os.path.isabs(expanded) and folder is not None:
        expanded = os.path.normpath(os.path.join(folder, expanded))
    # SQLAlchemy percent-decodes the database part and ends it at '?'.
    return prefix + expanded.replace("%", "%25").replace("?", "%3F") + query
