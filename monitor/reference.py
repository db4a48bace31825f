"""Parse and normalize image references exactly like the docker CLI (SPEC §1).

The rules are those of distribution/reference v0.6 ``ParseNormalizedNamed``:

* a 64-hex string alone is refused (it reads as an image ID);
* without a ``/`` the whole input is a Docker Hub image (``localhost:5000`` is
  ``docker.io/library/localhost`` with tag ``5000``);
* otherwise the first component is the registry host when it holds a ``.`` or
  a ``:``, is ``localhost``, or holds an uppercase letter (``Foo/bar`` is host
  ``Foo``); else the whole input is a Docker Hub path;
* on Docker Hub a one-component path gets the ``library/`` prefix;
* no tag and no digest means tag ``latest``; with both, the digest is fetched
  and the tag kept for display.

Deviations, both deliberate:

* ``registry-1.docker.io`` and ``index.docker.io`` both become ``docker.io``
  (distribution/reference only maps the latter; regclient maps both, and Hub
  rejects ``registry-1.docker.io/ubuntu`` without the ``library/`` prefix).
* A first component that must be a host (it holds a ``.``) but is not a valid
  ``host[:port]`` is refused. distribution/reference accepts ``a_b.c/d`` with
  an *empty* domain, which names no registry at all.

The patterns are ports of ``regexp.go``: ASCII only (Go's ``\\w`` is ASCII) and
anchored with ``\\Z`` (Python's ``$`` also matches before a trailing newline).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from monitor.errors import InvalidReference

__all__ = [
    "DOCKER_HUB_DOMAIN",
    "HUB_HOSTS",
    "ImageReference",
    "RepositoryName",
    "canonical_registry",
    "is_loopback",
    "is_valid_digest",
    "parse_reference",
    "parse_repository",
]

DOCKER_HUB_DOMAIN: Final = "docker.io"
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
_HUB_ALIASES: Final = frozenset({"index.docker.io", DOCKER_HUB_API_HOST})
HUB_HOSTS: Final = frozenset({DOCKER_HUB_DOMAIN, *_HUB_ALIASES})
_OFFICIAL_PREFIX: Final = "library/"
_DEFAULT_TAG: Final = "latest"
_LOCALHOST: Final = "localhost"
_MAX_PATH_LENGTH: Final = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_AND_PORT = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?\Z", re.ASCII)

_PATH_COMPONENT_PATTERN = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_COMPONENT = re.compile(rf"{_PATH_COMPONENT_PATTERN}\Z", re.ASCII)

_TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_TAG = re.compile(rf"{_TAG_PATTERN}\Z", re.ASCII)
# Patterns only an error message or a rare digest needs stay text: ``re`` compiles
# (and caches) them on first use, not every `regmon check` at import (~0.5 M each).
_TAG_CHARACTERS = r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z"

_DIGEST_ALGORITHM = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*\Z"
# go-digest's registered algorithms, as linked into docker and registry:2.
_DIGEST_HEX_LENGTH: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = {
    algorithm: rf"{algorithm}:[a-f0-9]{{{length}}}\Z"
    for algorithm, length in _DIGEST_HEX_LENGTH.items()
}

_IMAGE_ID = re.compile(r"[a-f0-9]{64}\Z", re.ASCII)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://", re.ASCII)


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalized image reference, e.g. ``docker.io/library/ubuntu:latest``.

    ``domain`` is the registry host as written (case kept; ``docker.io`` for
    Docker Hub). ``tag`` is ``None`` only for a digest-only reference.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ValueError("an ImageReference needs a tag or a digest")

    @property
    def api_host(self) -> str:
        """Host (and port) that serves ``/v2/``: Docker Hub's is ``registry-1.docker.io``."""
        return DOCKER_HUB_API_HOST if self.is_docker_hub else self.domain

    @property
    def registry(self) -> str:
        """The ``registry`` label value: the domain as normalized."""
        return self.domain

    @property
    def repository(self) -> str:
        """The repository path, as in ``/v2/<repository>/manifests/...``."""
        return self.path

    @property
    def name(self) -> str:
        """``domain/path`` without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def target(self) -> str:
        """What to request from ``/v2/<path>/manifests/<target>``: the digest pins."""
        if self.digest is not None:
            return self.digest
        if self.tag is None:  # unreachable: __post_init__ refuses it
            raise ValueError("an ImageReference needs a tag or a digest")
        return self.tag

    @property
    def host_key(self) -> str:
        """The domain lowercased: key for token caches and credential lookup."""
        return self.domain.lower()

    @property
    def is_docker_hub(self) -> bool:
        return self.domain == DOCKER_HUB_DOMAIN

    @property
    def is_loopback(self) -> bool:
        """True for ``localhost``, 127.0.0.0/8 and ``::1``, with or without a port."""
        return is_loopback(self.domain)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


# A NamedTuple, not a frozen dataclass: as immutable, ~3 M instructions cheaper to create
# at import, and `regmon check` imports this module without ever naming a repository.
class RepositoryName(NamedTuple):
    """A normalized repository, e.g. ``docker.io/library/nginx``: an image without a tag."""

    domain: str
    path: str

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def tagged(self, tag: str) -> ImageReference:
        return ImageReference(domain=self.domain, path=self.path, tag=tag, digest=None)

    def __str__(self) -> str:
        return self.name


def parse_repository(text: str) -> RepositoryName:
    """Parse and normalize a repository name (``nginx``, ``ghcr.io/acme/api``) as docker does.

    Raises ``InvalidReference`` naming the offending part; a tag or digest is one.
    """
    ref = parse_reference(text)
    if ref.digest is not None or _has_tag(text):
        raise InvalidReference(text, "a repository has no tag or digest (watch tags with image:)")
    return RepositoryName(ref.domain, ref.path)


def _has_tag(text: str) -> bool:
    return ":" in text.rpartition("/")[2]


def is_valid_digest(value: str) -> bool:
    """True for ``<algorithm>:<hex>`` with a registered algorithm and its exact hex length."""
    algorithm, _, _ = value.partition(":")
    pattern = _DIGEST.get(algorithm)
    return pattern is not None and re.match(pattern, value, re.ASCII) is not None


def parse_reference(text: str) -> ImageReference:
    """Parse and normalize ``text`` like ``docker pull`` does.

    Raises ``InvalidReference`` (and nothing else) naming the offending part.
    """
    if text == "":
        raise InvalidReference(text, "empty reference")
    scheme = _SCHEME.match(text)
    if scheme is not None:
        raise InvalidReference(
            text, f"scheme {scheme.group()!r} is not allowed in an image reference"
        )
    if _IMAGE_ID.match(text):
        raise InvalidReference(
            text,
            "a 64-character hex string alone reads as an image ID; "
            "qualify it, e.g. 'docker.io/<hex>'",
        )

    domain, remainder, explicit_domain = _split_docker_domain(text)
    rest, at, digest = remainder.partition("@")
    path, colon, tag = rest.partition(":")

    if explicit_domain and not _DOMAIN_AND_PORT.match(domain):
        raise InvalidReference(text, f"registry host {domain!r} is not a valid host[:port]")
    _check_path(text, path)
    if colon:
        _check_tag(text, tag)
    if at:
        _check_digest(text, digest)

    return ImageReference(
        domain=domain,
        path=path,
        tag=tag if colon else (None if at else _DEFAULT_TAG),
        digest=digest if at else None,
    )


def _split_docker_domain(text: str) -> tuple[str, str, bool]:
    """``splitDockerDomain``: (domain, remainder, whether the domain was written)."""
    first, slash, remainder = text.partition("/")
    if not slash:
        # "Familiar" fast path: without a "/", "localhost:5000" is a Hub name and tag.
        return DOCKER_HUB_DOMAIN, _OFFICIAL_PREFIX + text, False
    if first in _HUB_ALIASES:
        domain, explicit = DOCKER_HUB_DOMAIN, True
    elif first == _LOCALHOST or "." in first or ":" in first or first.lower() != first:
        domain, explicit = first, True
    else:
        domain, remainder, explicit = DOCKER_HUB_DOMAIN, text, False
    if domain == DOCKER_HUB_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder, explicit


def _check_path(text: str, path: str) -> None:
    if path in ("", _OFFICIAL_PREFIX):
        raise InvalidReference(text, "missing repository name")
    if path.lower() != path:
        raise InvalidReference(text, f"repository name {path!r} must be lowercase")
    for component in path.split("/"):
        if component == "":
            raise InvalidReference(text, f"repository name {path!r} has an empty component")
        if not _PATH_COMPONENT.match(component):
            raise InvalidReference(
                text,
                f"repository name component {component!r} must match {_PATH_COMPONENT_PATTERN}",
            )
    if len(path) > _MAX_PATH_LENGTH:
        raise InvalidReference(
            text,
            f"repository name must not be more than {_MAX_PATH_LENGTH} characters"
            f" (got {len(path)})",
        )


def _check_tag(text: str, tag: str) -> None:
    if _TAG.match(tag):
        return
    if re.match(_TAG_CHARACTERS, tag, re.ASCII):
        raise InvalidReference(text, f"tag {tag!r} must be at most 128 characters")
    raise InvalidReference(text, f"tag {tag!r} must match {_TAG_PATTERN}")


def _check_digest(text: str, digest: str) -> None:
    if is_valid_digest(digest):
        return
    algorithm, colon, _ = digest.partition(":")
    if not colon or not re.match(_DIGEST_ALGORITHM, algorithm, re.ASCII):
        raise InvalidReference(text, f"digest {digest!r} must be <algorithm>:<hex>")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise InvalidReference(text, f"unsupported digest algorithm {algorithm!r}")
    raise InvalidReference(text, f"{algorithm} digest needs {length} lowercase hex characters")


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (``[::1]``), with or without a port.

    The one loopback test: where plain HTTP may be tried without ``insecure``.
    """
    name = _host_without_port(host)
    if name.lower() == _LOCALHOST:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address.is_loopback
    return address == ipaddress.IPv6Address("::1")


def _host_without_port(domain: str) -> str:
    if domain.startswith("["):
        return domain[1 : domain.find("]")]
    return domain.partition(":")[0]


def canonical_registry(host: str) -> str:
    """A registry host as configured, looked up and labelled: lowercase, Docker Hub's
    API and legacy hosts folded into ``docker.io``."""
    key = host.strip().lower()
    return DOCKER_HUB_DOMAIN if key in HUB_HOSTS else key
