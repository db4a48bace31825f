"""What an extractor finds: an image reference as written, and where it was written."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FoundImage"]


@dataclass(frozen=True, slots=True)
class FoundImage:
    """One image use in a deployment file.

    ``image`` is the text after interpolation (not yet parsed as a reference);
    ``kind``/``namespace``/``name`` say which object uses it: a Kubernetes object
    (``Deployment``, ``prod``, ``api``), a compose service (``service``, None,
    ``web``) or a Dockerfile stage (``stage``, None, ``build`` or its index).
    ``hint`` explains an image that may be wrong because of its file (an unset
    variable), for the error message when the reference does not parse.
    """

    image: str
    file: str
    line: int
    kind: str
    name: str | None = None
    namespace: str | None = None
    container: str | None = None
    hint: str | None = None

    @property
    def where(self) -> str:
        """``file:line``, as editors and CI annotations take it."""
        return f"{self.file}:{self.line}"

    @property
    def object(self) -> str:
        """``Deployment/prod/api``, ``service/web``, ``stage/build``."""
        parts = [self.kind]
        if self.namespace:
            parts.append(self.namespace)
        if self.name is not None:
            parts.append(self.name)
        return "/".join(parts)

    def describe(self) -> str:
        """``Deployment/prod/api container api``: the object, then the container if any."""
        if self.container:
            return f"{self.object} container {self.container}"
        return self.object
