"""What an extractor finds: an image reference as written, and where it was written;
and the references those finds name, each once with every place (:func:`gather`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from monitor.errors import InputError, InvalidReference
from monitor.reference import ImageReference, parse_reference

__all__ = ["Checked", "FoundImage", "gather"]


# NamedTuples, not frozen dataclasses: as immutable, ~3 M instructions cheaper each to
# create at import (every `regmon check` imports this module).
class FoundImage(NamedTuple):
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


class Checked(NamedTuple):
    """One reference to check, and every place a deployment file uses it."""

    reference: ImageReference
    places: tuple[FoundImage, ...] = ()


def gather(arguments: Sequence[ImageReference], found: Sequence[FoundImage]) -> list[Checked]:
    """The arguments, then the images found, each normalized reference once (first
    appearance decides the order). A found image that does not parse is an error
    naming its place."""
    order: dict[str, ImageReference] = {}
    places: dict[str, list[FoundImage]] = {}
    for ref in arguments:
        order.setdefault(str(ref), ref)
        places.setdefault(str(ref), [])
    for image in found:
        try:
            ref = parse_reference(image.image)
        except InvalidReference as exc:
            hint = f" ({image.hint})" if image.hint else ""
            raise InputError(f"{image.file}: line {image.line}: {exc}{hint}") from None
        order.setdefault(str(ref), ref)
        places.setdefault(str(ref), []).append(image)
    return [Checked(ref, tuple(places[key])) for key, ref in order.items()]
