"""Files the config names by path: ``*_file`` secrets and CA bundles.

A secret is read whenever it is needed, so a rotated file is picked up without
a reload; at load it is only read to find a missing mount at once. Reads are
bounded (64 KiB) and refuse anything but a regular file, so /dev/zero or a
FIFO never hangs or fills memory. The text of a secret never appears in a
message.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from monitor.errors import ConfigError

__all__ = [
    "SECRET_LIMIT",
    "Unreadable",
    "check_ca_file",
    "check_secret_file",
    "read_limited",
    "read_secret",
]

SECRET_LIMIT: Final = 64 * 1024


class Unreadable(Exception):
    """Why a file named in the config cannot be read (its text is never included)."""


def read_limited(path: str, limit: int | None) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes
    (None: only check that it opens, return ""). Anything but a regular file is
    refused."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise Unreadable("not a regular file")
            if limit is None:
                return ""
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise Unreadable("no such file") from None
    except PermissionError:
        raise Unreadable("permission denied") from None
    except IsADirectoryError:
        raise Unreadable("is a directory") from None
    except OSError as exc:
        raise Unreadable(exc.strerror or type(exc).__name__) from None
    if len(data) > limit:
        raise Unreadable(f"larger than {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None


def read_secret(path: str, key: str) -> str:
    """The secret in ``path`` (trailing whitespace stripped); ``ConfigError`` naming
    ``key`` and the file, never its content, if it cannot be read."""
    try:
        return read_limited(path, SECRET_LIMIT).rstrip()
    except Unreadable as exc:
        raise ConfigError(f"{key} {path}: cannot read secret: {exc}") from None


def check_secret_file(path: str) -> None:
    """ValueError unless ``path`` holds a readable, non-empty secret."""
    try:
        text = read_limited(path, SECRET_LIMIT)
    except Unreadable as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise ValueError(f"{path} is empty")


def check_ca_file(path: str) -> None:
    """ValueError unless ``path`` is a readable PEM bundle the TLS stack accepts."""
    problem = None
    try:
        read_limited(path, None)
    except Unreadable as exc:
        problem = str(exc)
    else:
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except ssl.SSLError as exc:
            problem = f"not a PEM certificate bundle ({exc.reason or exc.strerror})"
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    if problem:
        raise ValueError(f"cannot read {path}: {problem}")
