"""Where images to check come from: deployment files (compose, Kubernetes manifests,
Dockerfiles). The extractors are pure (text in, :class:`FoundImage` out);
:mod:`monitor.sources.files` reads files, folders and stdin."""

from monitor.sources.found import FoundImage

__all__ = ["FoundImage"]
