"""Test harness: real registries (CNCF distribution 2.8.2), a token issuer, image
pushers, fault servers and wait helpers. See each module's docstring."""

from .faults import (
    CountingProxy,
    HungServer,
    LoopbackHTTPServer,
    RecordedRequest,
    Reply,
    free_port,
    garbage_server,
    hung_server,
    status_server,
)
from .images import (
    ALL_MANIFEST_TYPES,
    DEFAULT_PLATFORMS,
    ImagePusher,
    PushedImage,
    PushedIndex,
    PushError,
    sha256_digest,
)
from .registry import RegistryServer, require_registry_binary
from .token_issuer import PASSWORD, USERNAME, TokenIssuer, TokenRequest
from .wait import wait_for

__all__ = [
    "ALL_MANIFEST_TYPES",
    "DEFAULT_PLATFORMS",
    "PASSWORD",
    "USERNAME",
    "CountingProxy",
    "HungServer",
    "ImagePusher",
    "LoopbackHTTPServer",
    "PushError",
    "PushedImage",
    "PushedIndex",
    "RecordedRequest",
    "RegistryServer",
    "Reply",
    "TokenIssuer",
    "TokenRequest",
    "free_port",
    "garbage_server",
    "hung_server",
    "require_registry_binary",
    "sha256_digest",
    "status_server",
    "wait_for",
]
