"""Push small images straight over the Registry v2 API (no docker, no skopeo).

    pusher = ImagePusher(registry.url)                         # no auth
    pusher = ImagePusher(registry.url, auth=("ci", "s3cret"))  # Basic or Bearer, as challenged
    img = pusher.push_image("team/app", "v1", "oci")           # PushedImage(digest, media_type, ..)
    idx = pusher.push_index("team/app", "multi", "oci-index", attestation=True)
    idx.children["linux/arm/v7"]                               # child manifest digest
    pusher.delete_tag("team/app", "v1")

Every manifest body is serialised once; its digest is sha256 over those exact
bytes, and each push asserts the registry's Docker-Content-Digest agrees.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import ssl
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx

__all__ = [
    "ALL_MANIFEST_TYPES",
    "ATTESTATION_PLATFORM",
    "DEFAULT_PLATFORMS",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "ImageKind",
    "ImagePusher",
    "IndexKind",
    "PushError",
    "PushedImage",
    "PushedIndex",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
IN_TOTO = "application/vnd.in-toto+json"

ALL_MANIFEST_TYPES: tuple[str, ...] = (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
)
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7")
ATTESTATION_PLATFORM = "unknown/unknown"

ImageKind = Literal["oci", "docker"]
IndexKind = Literal["oci-index", "docker-list"]

_IMAGE_TYPES = {
    "oci": (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
}
_INDEX_TYPES = {"oci-index": (OCI_INDEX, "oci"), "docker-list": (DOCKER_LIST, "docker")}


class PushError(AssertionError):
    """The registry refused something the harness pushed (a harness bug or a setup problem)."""


@dataclass(frozen=True)
class PushedImage:
    digest: str
    media_type: str
    body: bytes
    platform: str = "linux/amd64"


@dataclass(frozen=True)
class PushedIndex:
    digest: str
    media_type: str
    body: bytes
    children: dict[str, str]  # platform ("linux/arm/v7") -> child manifest digest
    attestation: str | None = None  # digest of the unknown/unknown entry, if any
    child_images: dict[str, PushedImage] = field(default_factory=dict, repr=False)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(obj: Any) -> bytes:
    # Pretty-printed like docker's own output, so a client that re-serialises
    # JSON before hashing gets a visibly wrong digest.
    return json.dumps(obj, indent=3).encode()


def _platform_dict(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    result = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def _raise_for(response: httpx.Response, what: str, expected: Sequence[int]) -> None:
    if response.status_code not in expected:
        raise PushError(
            f"{what}: {response.request.method} {response.request.url} -> "
            f"{response.status_code} {response.text[:500]}"
        )


_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")
_CHALLENGE_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class _ChallengeAuth(httpx.Auth):
    """Answer Basic or Bearer challenges as one user (test code: simple, not a model).

    Bearer tokens are fetched for ``repository:<name>:pull,push,delete`` and
    cached per repository, so after the first request on a repository the token
    is sent up front.
    """

    requires_response_body = True

    def __init__(self, username: str, password: str) -> None:
        raw = f"{username}:{password}".encode()
        self._basic = "Basic " + base64.b64encode(raw).decode()
        self._use_basic = False
        self._tokens: dict[str, str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        match = _REPO_PATH.match(request.url.path)
        repo = match.group("name") if match else ""
        if self._use_basic:
            request.headers["Authorization"] = self._basic
        elif repo in self._tokens:
            request.headers["Authorization"] = f"Bearer {self._tokens[repo]}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("www-authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            self._use_basic = True
            request.headers["Authorization"] = self._basic
            yield request
            return
        if scheme != "bearer":
            return
        params = {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(challenge)}
        scopes = [f"repository:{repo}:pull,push,delete"] if repo else []
        scopes += [s for s in params.get("scope", "").split(" ") if s and s not in scopes]
        token_request = httpx.Request(
            "GET",
            params["realm"],
            params=[("service", params.get("service", ""))] + [("scope", s) for s in scopes],
            headers={"Authorization": self._basic},
        )
        token_response = yield token_request
        _raise_for(token_response, "token", (200,))
        body = token_response.json()
        token = body.get("access_token") or body["token"]
        if repo:
            self._tokens[repo] = token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class ImagePusher:
    """Push, inspect and delete test images on one registry (sync httpx)."""

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None = None,
        *,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url,
            auth=_ChallengeAuth(*auth) if auth else None,
            timeout=timeout,
            verify=verify,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # blobs
    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        start = self.client.post(f"/v2/{repo}/blobs/uploads/")
        _raise_for(start, "start blob upload", (202,))
        location = start.url.join(start.headers["location"])
        done = self.client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _raise_for(done, "finish blob upload", (201,))
        return digest

    # manifests
    def push_raw_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT ``body`` as is under ``ref`` (tag or digest); returns sha256(body)."""
        digest = sha256_digest(body)
        response = self.client.put(
            f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
        )
        _raise_for(response, f"push manifest {repo}:{ref}", (201,))
        returned = response.headers.get("docker-content-digest")
        if returned != digest:
            raise PushError(f"registry says {returned} for a manifest whose sha256 is {digest}")
        return digest

    def push_image(
        self,
        repo: str,
        tag: str | None,
        kind: ImageKind = "oci",
        *,
        seed: object = None,
        platform: str = "linux/amd64",
    ) -> PushedImage:
        """One config blob + one layer blob + a manifest, tagged ``tag`` (None: by digest only).

        Without ``seed`` every push has new random blobs and so a new digest; the
        same ``seed`` (and platform) gives the same digest every time.
        """
        manifest_type, config_type, layer_type = _IMAGE_TYPES[kind]
        rng = random.Random(f"{seed}|{kind}|{platform}") if seed is not None else None
        layer = rng.randbytes(256) if rng is not None else os.urandom(256)
        layer_digest = sha256_digest(layer)
        config = _dumps(
            {
                **_platform_dict(platform),
                "created": "2024-01-01T00:00:00Z",
                "config": {"Labels": {"regmon.test.nonce": layer_digest[7:23]}},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "regmon test"}],
            }
        )
        config_digest = self.push_blob(repo, config)
        self.push_blob(repo, layer)
        body = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(layer)}],
            }
        )
        digest = self.push_raw_manifest(repo, tag or sha256_digest(body), body, manifest_type)
        return PushedImage(digest, manifest_type, body, platform)

    def _push_attestation(self, repo: str, subject: str, seed: object) -> tuple[str, int]:
        rng = random.Random(f"{seed}|attestation") if seed is not None else None
        statement = _dumps(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "subject": [{"digest": {"sha256": subject[7:]}}],
                "predicate": {"nonce": (rng.randbytes(8) if rng else os.urandom(8)).hex()},
            }
        )
        config = _dumps({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers"}})
        config_digest = self.push_blob(repo, config)
        statement_digest = self.push_blob(repo, statement)
        body = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {
                        "mediaType": IN_TOTO,
                        "digest": statement_digest,
                        "size": len(statement),
                        "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance"},
                    }
                ],
            }
        )
        digest = self.push_raw_manifest(repo, sha256_digest(body), body, OCI_MANIFEST)
        return digest, len(body)

    def push_index(
        self,
        repo: str,
        tag: str,
        kind: IndexKind = "oci-index",
        platforms: Sequence[str] = DEFAULT_PLATFORMS,
        *,
        attestation: bool = False,
        seed: object = None,
        unstated: Sequence[str] = (),
        attestation_platform: bool = True,
    ) -> PushedIndex:
        """Push one child image per platform by digest, then the index/list under ``tag``.

        ``attestation=True`` (OCI index only) adds a BuildKit-style entry with
        platform unknown/unknown pointing at an in-toto manifest for the first child,
        annotated as buildx writes it. Entries of ``unstated`` platforms carry no
        ``platform`` (only their config blob says which platform they are);
        ``attestation_platform=False`` leaves it out of the attestation entry too,
        which is then known only by its ``vnd.docker.reference.type`` annotation.
        """
        index_type, child_kind = _INDEX_TYPES[kind]
        if attestation and kind != "oci-index":
            raise ValueError("attestation entries are only pushed in an OCI index")
        children: dict[str, PushedImage] = {}
        entries = []
        for platform in platforms:
            child = self.push_image(repo, None, child_kind, seed=seed, platform=platform)  # type: ignore[arg-type]
            children[platform] = child
            described: dict[str, Any] = {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(child.body),
            }
            if platform not in unstated:
                described["platform"] = _platform_dict(platform)
            entries.append(described)
        attestation_digest = None
        if attestation:
            subject = next(iter(children.values())).digest
            attestation_digest, size = self._push_attestation(repo, subject, seed)
            described = {
                "mediaType": OCI_MANIFEST,
                "digest": attestation_digest,
                "size": size,
                "annotations": {
                    "vnd.docker.reference.digest": subject,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            }
            if attestation_platform:
                described["platform"] = {"architecture": "unknown", "os": "unknown"}
            entries.append(described)
        body = _dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries})
        digest = self.push_raw_manifest(repo, tag, body, index_type)
        return PushedIndex(
            digest=digest,
            media_type=index_type,
            body=body,
            children={p: c.digest for p, c in children.items()},
            attestation=attestation_digest,
            child_images=children,
        )

    # reading and deleting
    def head_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = ALL_MANIFEST_TYPES
    ) -> httpx.Response:
        return self.client.head(
            f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)}
        )

    def get_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = ALL_MANIFEST_TYPES
    ) -> httpx.Response:
        return self.client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)})

    def delete_manifest(self, repo: str, digest: str) -> None:
        response = self.client.delete(f"/v2/{repo}/manifests/{digest}")
        _raise_for(response, f"delete {repo}@{digest}", (202,))

    def delete_tag(self, repo: str, tag: str) -> str:
        """Resolve ``tag`` with HEAD (all six Accept types) and DELETE that digest.

        Registry 2.8 can only delete by digest, so every tag that points at the
        same manifest disappears too. Returns the deleted digest.
        """
        head = self.head_manifest(repo, tag)
        _raise_for(head, f"resolve {repo}:{tag}", (200,))
        digest = head.headers["docker-content-digest"]
        self.delete_manifest(repo, digest)
        return digest

    def tags(self, repo: str) -> list[str]:
        response = self.client.get(f"/v2/{repo}/tags/list")
        _raise_for(response, f"list tags of {repo}", (200,))
        return list(response.json().get("tags") or [])
