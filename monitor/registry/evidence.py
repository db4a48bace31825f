"""Which platforms a manifest serves, decided by evidence and remembered by digest.

An index states its entries' platforms (attestations are never platforms); a
single image manifest's platform is what its config blob says; schema1 states
its architecture in the manifest. Digests name immutable content, so what a
digest serves is fetched once per process (single-flight, bounded LRU) and a
repeated check of an unchanged tag costs no request beyond its HEAD.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from monitor.registry.manifests import parse_manifest
from monitor.registry.platforms import (
    IMAGE_MANIFEST_MEDIA_TYPES,
    ConfigRef,
    IndexEntry,
    Platform,
    config_platform,
    image_config,
    index_entries,
    is_index,
    match_platforms,
    schema1_platform,
)

__all__ = ["MAX_LOOKUPS_PER_INDEX", "PlatformEvidence", "Served"]

K = TypeVar("K")
V = TypeVar("V")

# An index entry that states no platform is looked up (its manifest, then its config).
# A hostile index could list thousands of such entries; past this many they are ignored.
MAX_LOOKUPS_PER_INDEX = 8
CACHE_SIZE = 4096

# What a manifest digest serves: (platform, platform manifest digest) pairs.
Served = tuple[tuple[Platform, str], ...]
ManifestGetter = Callable[[str], Awaitable[tuple[bytes, str | None]]]  # digest -> (body, type)
BlobGetter = Callable[[ConfigRef], Awaitable[bytes]]  # verified config blob bytes


class _OnceCache(Generic[K, V]):
    """A bounded LRU whose misses are fetched once at a time per key."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._locks: dict[K, asyncio.Lock] = {}
        self.fetches = 0

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def peek(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._size:
            self._values.popitem(last=False)

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if key in self._values:
                    return self._values[key]
                self.fetches += 1
                value = await fetch()
                self.put(key, value)
                return value
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]


class PlatformEvidence:
    """Per-client memory of what each manifest and config digest says (no I/O of its own)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.manifests: _OnceCache[str, Served] = _OnceCache(size)
        self.configs: _OnceCache[str, Platform | None] = _OnceCache(size)
        self._last_digest: _OnceCache[str, str] = _OnceCache(size)

    def expects(self, reference: str) -> bool:
        """Whether ``reference`` last pointed at a digest whose platforms are known,
        so that a HEAD (its digest) is enough to decide its platforms again."""
        digest = self._last_digest.peek(reference)
        return digest is not None and digest in self.manifests

    def remember(self, reference: str, digest: str) -> None:
        self._last_digest.put(reference, digest)

    async def resolve(
        self,
        digest: str,
        wanted: Sequence[str],
        get_manifest: ManifestGetter,
        get_blob: BlobGetter,
        *,
        known: tuple[bytes, str | None] | None = None,
    ) -> dict[str, str | None]:
        """Map each wanted platform to the manifest digest serving it, or None.

        ``known`` is the body and media type of ``digest`` when the caller already
        has them (a GET instead of a HEAD), saving the manifest request.
        """

        async def body() -> tuple[bytes, str | None]:
            return known if known is not None else await get_manifest(digest)

        served = await self._served(digest, body, get_manifest, get_blob, nested=False)
        return match_platforms(served, wanted)

    async def _served(
        self,
        digest: str,
        body: Callable[[], Awaitable[tuple[bytes, str | None]]],
        get_manifest: ManifestGetter,
        get_blob: BlobGetter,
        *,
        nested: bool,
    ) -> Served:
        async def fetch() -> Served:
            raw, media_type = await body()
            doc = parse_manifest(raw)
            if is_index(doc, media_type):
                if nested:
                    return ()  # an index in an index: not followed further
                return await self._index(index_entries(doc), get_manifest, get_blob)
            if doc.get("schemaVersion") == 1:
                platform = schema1_platform(doc)
            else:
                config = image_config(doc)
                platform = None
                if config is not None:
                    platform = await self.configs.get(
                        config.digest, lambda: self._config(config, get_blob)
                    )
            return ((platform, digest),) if platform is not None else ()

        return await self.manifests.get(digest, fetch)

    async def _index(
        self, entries: Sequence[IndexEntry], get_manifest: ManifestGetter, get_blob: BlobGetter
    ) -> Served:
        served: list[tuple[Platform, str]] = []
        lookups = 0
        for entry in entries:
            child = entry.digest
            if entry.platform is not None:
                served.append((entry.platform, child))
                continue
            if entry.media_type and entry.media_type not in IMAGE_MANIFEST_MEDIA_TYPES:
                continue  # neither an image nor stated: an artifact, not a platform
            lookups += 1
            if lookups > MAX_LOOKUPS_PER_INDEX:
                break

            def child_body(child: str = child) -> Awaitable[tuple[bytes, str | None]]:
                return get_manifest(child)

            served += await self._served(child, child_body, get_manifest, get_blob, nested=True)
        return tuple(served)

    @staticmethod
    async def _config(config: ConfigRef, get_blob: BlobGetter) -> Platform | None:
        return config_platform(await get_blob(config))
