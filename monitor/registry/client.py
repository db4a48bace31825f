"""The Registry HTTP API v2 client: one manifest answer per reference.

Cost per check, once a registry is known: one HEAD. The first request to a
registry learns its scheme and auth challenge (``GET /v2/``, single-flight);
tokens are fetched once per repository scope and shared until they expire.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

import httpx

from monitor.domain import Reason, Status
from monitor.errors import AccessDenied, NotFound, RegistryDecision, RegistryError
from monitor.reference import ImageReference, is_valid_digest
from monitor.registry.auth import UNKNOWN, Authorizer, RegistryAuth
from monitor.registry.bodies import (
    MAX_CONFIG_BYTES,
    read_body,
    size_text,
)
from monitor.registry.classify import (
    body_media_type,
    manifest_media_type,
    next_page_path,
    not_found,
    parse_error_body,
    tag_page,
)
from monitor.registry.credentials import CredentialStore
from monitor.registry.manifests import (
    ACCEPT_HEADER,
    MAX_MANIFEST_BYTES,
    ManifestFormatError,
    compute_digest,
    parse_manifest,
)
from monitor.registry.session import (
    Host,
    ManifestMethod,
    RegistrySettings,
    RegistrySlots,
    RequestObserver,
    Session,
)
from monitor.registry.transport import Answer, TransportFactory
from monitor.text import clean

if TYPE_CHECKING:
    from monitor.registry.evidence import PlatformEvidence
    from monitor.registry.platforms import ConfigRef

__all__ = [
    "ManifestAnswer",
    "ManifestMethod",
    "RegistryClient",
    "RegistrySettings",
    "RequestObserver",
    "TagListing",
]

_STATUS: dict[type[RegistryDecision], Status] = {
    AccessDenied: Status.DENIED,
    NotFound: Status.MISSING,
}
TAGS_PAGE_SIZE = 1000  # what go-containerregistry asks for; Docker Hub answers 100 a page
MAX_TAG_PAGES = 1000  # a registry whose listing never ends is answering nonsense


@dataclass(frozen=True, slots=True)
class ManifestAnswer:
    """A decided answer: present, missing or denied. Errors are raised as RegistryError."""

    status: Status
    digest: str | None = None
    media_type: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    detail: str | None = None
    http_status: int | None = None


class TagListing(NamedTuple):  # not a frozen dataclass: ~3 M instructions cheaper to create
    """A decided listing: present (with every tag, sorted), missing or denied."""

    status: Status
    tags: tuple[str, ...] = ()
    pages: int = 0
    detail: str | None = None
    http_status: int | None = None


class RegistryClient:
    """Async client shared by every check; create once, ``aclose()`` at the end."""

    def __init__(
        self,
        *,
        settings_for: Callable[[str], RegistrySettings] = lambda host: RegistrySettings(),
        credentials: CredentialStore | None = None,
        transport_factory: TransportFactory | None = None,
        observer: RequestObserver | None = None,
        slots: RegistrySlots | None = None,
    ) -> None:
        self._session = Session(
            settings_for=settings_for,
            transport_factory=transport_factory,
            observer=observer,
            slots=slots,
        )
        self._auth = Authorizer(
            credentials or CredentialStore(),
            lambda name: self._session.http(self._session.host(name).settings),
        )
        self.tokens = self._auth.tokens

    @functools.cached_property
    def evidence(self) -> PlatformEvidence:
        """What each digest serves, built on the first check with platforms: platform
        selection is not imported by a check without them."""
        from monitor.registry.evidence import PlatformEvidence

        return PlatformEvidence()

    async def aclose(self) -> None:
        await self._session.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- public -----------------------------------------------------------------

    def ratelimit(self, registry: str) -> tuple[int | None, int | None]:
        return self._session.ratelimit(registry)

    async def wait_for_backoff(self, registry: str) -> None:
        """Sleep while the registry is backing off after a 429."""
        await self._session.wait_for_backoff(registry)

    def slot(self, ref: ImageReference) -> contextlib.AbstractAsyncContextManager[None]:
        """The registry's concurrency gate, for a check to hold before its budget starts."""
        return self._session.host(ref.api_host).gate.hold()

    def prepare(self, registry: str) -> None:
        """Build what requests to ``registry`` need (transport, TLS context) now.

        Process setup, not a check's work: callers do it before a budget starts.
        Raises RegistryError for an unusable ``ca_file``.
        """
        self._session.http(self._session.host(registry).settings)

    def discovered(self, registry: str) -> bool:
        """Whether the registry's scheme and challenge are known (no ``GET /v2/`` to do)."""
        host = self._session.known(registry)
        return host is not None and host.challenge is not UNKNOWN

    async def discover(self, registry: str) -> None:
        """Learn the registry's scheme and challenge (one ``GET /v2/``, single-flight)."""
        await self._session.discover(self._session.host(registry))

    async def fetch_manifest(
        self, ref: ImageReference, *, platforms: Sequence[str] = ()
    ) -> ManifestAnswer:
        """Present, missing or denied; raise RegistryError when it cannot be decided."""
        host = self._session.host(ref.api_host)
        try:
            return await self._fetch_manifest(host, ref, platforms)
        except RegistryDecision as decided:
            return ManifestAnswer(
                _STATUS[type(decided)], detail=decided.detail, http_status=decided.http_status
            )

    async def list_tags(self, ref: ImageReference) -> TagListing:
        """Every tag of ``ref``'s repository, following ``Link`` pagination to the end.

        Raises RegistryError when the listing cannot be completed: a partial
        listing must never read as "these tags were deleted".
        """
        host = self._session.host(ref.api_host)
        try:
            return await self._list_tags(host, ref)
        except RegistryDecision as decided:
            return TagListing(
                _STATUS[type(decided)], detail=decided.detail, http_status=decided.http_status
            )

    # -- plumbing ---------------------------------------------------------------

    async def _request(
        self, host: Host, method: str, path: str, scopes: tuple[str, ...], accept: str
    ) -> httpx.Response:
        """Send with credentials; the auth flow re-authenticates at most once, then decides."""
        await self._session.discover(host)
        auth = RegistryAuth(host, scopes, self._auth)
        url = f"{host.base_url}{path}"
        return await self._session.send(host, method, url, {"Accept": accept}, auth=auth)

    async def _head(self, host: Host, path: str, scopes: tuple[str, ...], accept: str) -> Answer:
        """As ``_request`` for a HEAD, on the transport's lean path where it can be."""
        await self._session.discover(host)
        auth = RegistryAuth(host, scopes, self._auth)
        return await self._session.head(host, f"{host.base_url}{path}", accept, auth)

    async def _list_tags(self, host: Host, ref: ImageReference) -> TagListing:
        scopes = (f"repository:{ref.path}:pull",)
        path = f"/v2/{ref.path}/tags/list?n={TAGS_PAGE_SIZE}"
        tags: set[str] = set()
        seen_pages: set[str] = set()
        pages = 0
        while True:
            pages += 1
            if pages > MAX_TAG_PAGES:
                raise RegistryError(
                    Reason.PROTOCOL, f"{host.name}: tags/list has more than {MAX_TAG_PAGES} pages"
                )
            seen_pages.add(path)
            response = await self._request(host, "GET", path, scopes, "application/json")
            try:
                if response.status_code != 200:
                    await self._classify_failure(host, response, ref, body_read=False)
                body = await self._read_body(response, "tags/list page")
                link = response.links.get("next", {}).get("url")
            finally:
                await response.aclose()
            page = tag_page(host.name, body)
            before = len(tags)
            tags.update(page)
            if link:
                path = next_page_path(host.name, host.base_url or "", link)
                if path in seen_pages:
                    raise RegistryError(Reason.PROTOCOL, f"{host.name}: tags/list pagination loops")
            elif len(page) >= TAGS_PAGE_SIZE and len(tags) > before:
                # A full page and no Link: the spec says ask on from the last tag.
                path = f"/v2/{ref.path}/tags/list?n={TAGS_PAGE_SIZE}&last={quote(max(page))}"
            else:
                return TagListing(Status.PRESENT, tuple(sorted(tags)), pages, http_status=200)

    async def _read_body(self, response: httpx.Response, what: str = "manifest") -> bytes:
        return await read_body(response, MAX_MANIFEST_BYTES, what)

    async def _get_manifest(
        self, host: Host, ref: ImageReference, target: str, scopes: tuple[str, ...]
    ) -> tuple[str, str | None, bytes, int]:
        """GET a manifest and return (digest over the exact bytes, media type, body, status)."""
        path = f"/v2/{ref.path}/manifests/{target}"
        response = await self._request(host, "GET", path, scopes, ACCEPT_HEADER)
        return await self._manifest_from(host, ref, response)

    async def _manifest_from(
        self, host: Host, ref: ImageReference, response: httpx.Response
    ) -> tuple[str, str | None, bytes, int]:
        try:
            if response.status_code != 200:
                await self._classify_failure(host, response, ref, body_read=False)
            labelled = manifest_media_type(response.headers.get("content-type"))
            body = await self._read_body(response)
        finally:
            await response.aclose()
        try:
            doc = parse_manifest(body)
            kind = labelled or body_media_type(doc)
            digest = compute_digest(body, kind)
        except ManifestFormatError as exc:
            raise RegistryError(
                Reason.PROTOCOL, f"{host.name} answered 200 with {exc}", http_status=200
            ) from exc
        return digest, kind, body, 200

    async def _fetch_manifest(
        self, host: Host, ref: ImageReference, platforms: Sequence[str]
    ) -> ManifestAnswer:
        scopes = (f"repository:{ref.path}:pull",)
        body: bytes | None = None
        seen_as = f"{host.name.lower()}/{ref.path}:{ref.target}"
        # Platforms need the body: while this tag's last digest is not known to serve
        # them, one GET (one pull either way) replaces HEAD + GET by digest.
        if host.settings.manifest_method == "get" or (
            platforms and not self.evidence.expects(seen_as)
        ):
            digest, media_type, body, status = await self._get_manifest(
                host, ref, ref.target, scopes
            )
        else:
            path = f"/v2/{ref.path}/manifests/{ref.target}"
            response = await self._head(host, path, scopes, ACCEPT_HEADER)
            pushed: tuple[str, str | None, bytes, int] | None = None
            try:
                status = response.status_code
                if status == 404:
                    await response.aclose()
                    pushed = await self._get_after_404(host, ref)
                elif status != 200:
                    await self._classify_failure(host, response, ref, body_read=True)
                media_type = manifest_media_type(response.headers.get("content-type"))
                header = response.headers.get("docker-content-digest")
            finally:
                await response.aclose()
            if pushed is not None:
                digest, media_type, body, status = pushed
            elif header is not None:
                if not is_valid_digest(header.strip()):
                    raise RegistryError(
                        Reason.PROTOCOL,
                        f"{host.name} sent an invalid Docker-Content-Digest"
                        f" ({clean(header, limit=80)})",
                        http_status=200,
                    )
                digest = header.strip()
                if media_type is None:
                    # The label is not a manifest type (go-containerregistry echoes what
                    # the pusher sent): the body says what it is. By digest: verified.
                    body_digest, media_type, body, _ = await self._get_manifest(
                        host, ref, digest, scopes
                    )
                    if body_digest != digest:
                        raise RegistryError(
                            Reason.PROTOCOL,
                            f"manifest body does not hash to {digest}",
                            http_status=200,
                        )
            else:
                digest, media_type, body, status = await self._get_manifest(
                    host, ref, ref.target, scopes
                )
        if ref.digest is not None and digest != ref.digest:
            raise RegistryError(
                Reason.PROTOCOL,
                f"{host.name} answered digest {digest} for {ref.digest}",
                http_status=status,
            )
        resolved: dict[str, str] = {}
        if platforms:
            chosen = await self._platforms(host, ref, digest, media_type, body, scopes, platforms)
            self.evidence.remember(seen_as, digest)
            absent = [p for p, d in chosen.items() if d is None]
            if absent:
                return ManifestAnswer(
                    Status.MISSING,
                    digest=digest,
                    media_type=media_type,
                    detail=f"no {', '.join(absent)} manifest",
                    http_status=status,
                )
            resolved = {p: d for p, d in chosen.items() if d is not None}
        return ManifestAnswer(
            Status.PRESENT,
            digest=digest,
            media_type=media_type,
            platforms=resolved,
            http_status=status,
        )

    async def _platforms(
        self,
        host: Host,
        ref: ImageReference,
        digest: str,
        media_type: str | None,
        body: bytes | None,
        scopes: tuple[str, ...],
        platforms: Sequence[str],
    ) -> dict[str, str | None]:
        """Which manifest serves each platform, by the index or the config blob (SPEC §2)."""

        async def get_manifest(target: str) -> tuple[bytes, str | None]:
            got, got_type, got_body, _ = await self._get_manifest(host, ref, target, scopes)
            if got != target:
                raise RegistryError(
                    Reason.PROTOCOL, f"manifest body does not hash to {target}", http_status=200
                )
            return got_body, got_type

        async def get_blob(config: ConfigRef) -> bytes:
            return await self._get_blob(host, ref, config, scopes)

        known = (body, media_type) if body is not None else None
        try:
            return await self.evidence.resolve(
                digest, platforms, get_manifest, get_blob, known=known
            )
        except ManifestFormatError as exc:
            raise RegistryError(Reason.PROTOCOL, f"{host.name}: {exc}", http_status=200) from exc

    async def _get_blob(
        self, host: Host, ref: ImageReference, config: ConfigRef, scopes: tuple[str, ...]
    ) -> bytes:
        """GET a config blob (capped, digest verified); same scope as the manifest."""
        if config.size > MAX_CONFIG_BYTES:
            raise RegistryError(
                Reason.PROTOCOL,
                f"config blob {config.digest} is larger than {size_text(MAX_CONFIG_BYTES)}",
            )
        path = f"/v2/{ref.path}/blobs/{config.digest}"
        response = await self._request(host, "GET", path, scopes, "*/*")
        try:
            status = response.status_code
            if status != 200:
                raise RegistryError(
                    Reason.SERVER_ERROR if status >= 500 else Reason.PROTOCOL,
                    f"{host.name} answered HTTP {status} for config blob {config.digest}",
                    http_status=status,
                )
            blob = await read_body(response, MAX_CONFIG_BYTES, "config blob")
        finally:
            await response.aclose()
        if "sha256:" + hashlib.sha256(blob).hexdigest() != config.digest:
            raise RegistryError(
                Reason.PROTOCOL, f"config blob does not hash to {config.digest}", http_status=200
            )
        return blob

    async def _classify_failure(
        self, host: Host, response: Answer, ref: ImageReference, *, body_read: bool
    ) -> None:
        """Turn a non-200 manifest answer into a decision or a RegistryError (always raises).

        A 404 is decided by its body, never its Content-Type: a JSON ``errors[]``
        document is the registry's answer (go-containerregistry labels it
        text/plain), any other text is a router's (distribution's route miss
        is ``404 page not found``).
        """
        status = response.status_code
        # Only a HEAD's answer is not an httpx.Response (the lean path's).
        readable = None if body_read or not isinstance(response, httpx.Response) else response
        if status == 404:
            # A HEAD's 404 (no body) is asked about first: ``_get_after_404``.
            not_found(host.name, b"" if readable is None else await self._read_body(readable))
        if status == 403:
            raise AccessDenied("denied", http_status=403)
        if status >= 500:
            raise RegistryError(
                Reason.SERVER_ERROR, f"{host.name} answered HTTP {status}", http_status=status
            )
        code = ""
        if readable is not None:
            code = parse_error_body(await self._read_error(readable)).code
        raise RegistryError(
            Reason.PROTOCOL,
            f"{host.name} answered HTTP {status}{' ' + code if code else ''}",
            http_status=status,
        )

    async def _read_error(self, response: httpx.Response) -> bytes:
        try:
            return await self._read_body(response)
        except RegistryError:
            return b""

    async def _get_after_404(
        self, host: Host, ref: ImageReference
    ) -> tuple[str, str | None, bytes, int]:
        """HEAD answers carry no body: ask once with GET what a HEAD's 404 means (raised,
        decided by its body). A 200 is the tag, pushed between the HEAD and this GET: the
        later answer stands (it was a protocol error, seen when a push raced a check)."""
        path = f"/v2/{ref.path}/manifests/{ref.target}"
        scopes = (f"repository:{ref.path}:pull",)
        response = await self._request(host, "GET", path, scopes, ACCEPT_HEADER)
        if response.status_code == 200:
            return await self._manifest_from(host, ref, response)
        try:
            body = await self._read_body(response)
        finally:
            await response.aclose()
        not_found(host.name, body)
