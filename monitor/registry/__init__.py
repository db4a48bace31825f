"""Registry HTTP API v2 client: auth, credentials, manifests."""

from monitor.registry.client import ManifestAnswer, RegistryClient, RegistrySettings
from monitor.registry.credentials import Credential, CredentialStore

__all__ = ["Credential", "CredentialStore", "ManifestAnswer", "RegistryClient", "RegistrySettings"]
