"""The one place a response body is read: streamed, decoded by us, capped on decoded bytes.

Every answer a registry or a realm sends (manifests, config blobs, token answers,
error bodies) goes through :func:`read_body`. httpx would inflate a whole network
chunk at once (16-64 KiB of gzip can become 16-64 MiB), so we read the raw stream
and inflate with ``max_length``: a gzip bomb stops at the cap, not after it.
"""

from __future__ import annotations

import zlib

import httpx

from monitor.domain import Reason
from monitor.errors import RegistryError
from monitor.registry.transport import failure_reason

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_CONFIG_BYTES",
    "MAX_TOKEN_BODY_BYTES",
    "read_body",
    "size_text",
]

# What read_body can decode; sent explicitly so that installing brotli or zstandard
# (which makes httpx advertise them) cannot bring an encoding we would refuse.
ACCEPT_ENCODING = "gzip, deflate"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_TOKEN_BODY_BYTES = 1024 * 1024


def size_text(limit: int) -> str:
    """``4 MiB``, ``64 KiB``: a cap as users read it."""
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


class _Identity:
    def feed(self, data: bytes, room: int) -> tuple[bytes, bytes]:
        return data[:room], data[room:]


class _Zlib:
    """gzip or deflate; ``feed`` never returns more than ``room`` bytes."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._raw_fallback = encoding == "deflate"  # servers send zlib-wrapped or raw deflate
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> tuple[bytes, bytes]:
        if self._inflater.eof:
            return b"", b""  # bytes after the end of the stream are ignored, as httpx does
        try:
            out = self._inflater.decompress(data, room)
        except zlib.error:
            if self._raw_fallback and not self._started:
                self._raw_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data, room)
            raise
        self._started = True
        return out, self._inflater.unconsumed_tail


def _decoder(response: httpx.Response, what: str) -> _Identity | _Zlib:
    value = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in value.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return _Identity()
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Zlib("deflate" if codings[0] == "deflate" else "gzip")
    shown = value[:40].encode("ascii", "replace").decode()
    raise RegistryError(Reason.PROTOCOL, f"{what} has an unsupported Content-Encoding {shown!r}")


async def read_body(
    response: httpx.Response, limit: int, what: str, *, truncate: bool = False
) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes.

    Past the cap: with ``truncate`` the first ``limit`` bytes (error bodies, where
    the beginning is all we show), else ``RegistryError(PROTOCOL)`` naming ``what``.
    A failure while reading keeps the transport's reason (timeout, unreachable...).
    """
    too_large = RegistryError(Reason.PROTOCOL, f"{what} is larger than {size_text(limit)}")
    decoder = _decoder(response, what)
    length = response.headers.get("content-length", "")
    if (
        not truncate
        and isinstance(decoder, _Identity)
        and length.isascii()
        and length.isdigit()
        and int(length) > limit
    ):
        raise too_large
    out = bytearray()
    try:
        async for raw in response.aiter_raw():
            data = raw
            while data:
                # One byte more than the room left tells "exactly full" from "too large".
                chunk, rest = decoder.feed(data, limit - len(out) + 1)
                out += chunk
                if len(out) > limit:
                    if truncate:
                        return bytes(out[:limit])
                    raise too_large
                if not chunk and rest == data:
                    break  # the decoder made no progress (end of the compressed stream)
                data = rest
    except zlib.error as exc:
        raise RegistryError(Reason.PROTOCOL, f"{what} is not valid gzip/deflate") from exc
    except httpx.HTTPError as exc:
        raise RegistryError(failure_reason(exc), f"reading {what} failed") from exc
    return bytes(out)
