"""Images in docker compose files: ``services.*.image``, interpolated as compose does.

Variables come from the environment, then from the ``.env`` file beside the compose
file (the environment wins, as in compose). Profiles hide nothing: a service that only
starts under some profile still needs its image. A service with ``build:`` and
``image:`` counts too: the deployment pulls that image (compose pulls before it builds).
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from monitor.errors import InputError
from monitor.interpolation import SubstitutionError, substitute
from monitor.sources._nodes import line_of, lookup, mapping_items, scalar
from monitor.sources.found import FoundImage

__all__ = ["images_in_compose", "interpolate", "is_compose"]


def is_compose(documents: list[yaml.Node]) -> bool:
    """A single mapping with ``services`` as a mapping and no Kubernetes ``kind``."""
    if len(documents) != 1 or not isinstance(documents[0], yaml.MappingNode):
        return False
    doc = documents[0]
    return isinstance(lookup(doc, "services"), yaml.MappingNode) and lookup(doc, "kind") is None


def interpolate(text: str, variables: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` as compose interpolates it, and the variables that were not set."""
    result = substitute(text, variables, dialect="compose")
    return result.value, result.unset


def images_in_compose(
    documents: list[yaml.Node], file: str, variables: Mapping[str, str]
) -> list[FoundImage]:
    if not documents:
        return []
    services = lookup(documents[0], "services")
    if services is None:
        return []
    if not isinstance(services, yaml.MappingNode):
        raise InputError(f"{file}: line {line_of(services)}: services is not a mapping")
    found: list[FoundImage] = []
    for name, service in mapping_items(services):
        node = lookup(service, "image")
        if node is None:
            continue  # build-only service: its image is made on the spot
        raw = scalar(node)
        if raw is None or not isinstance(node, yaml.ScalarNode):
            raise InputError(f"{file}: line {line_of(node)}: services.{name}.image is not a string")
        try:
            image, unset = interpolate(raw, variables)
        except SubstitutionError as exc:
            raise InputError(
                f"{file}: line {line_of(node)}: services.{name}.image: {exc}"
            ) from None
        hint = None
        if unset:
            names = ", ".join(unset)
            hint = (
                f"variable {names} is not set"
                if len(unset) == 1
                else f"variables {names} are not set"
            )
        found.append(
            FoundImage(
                image=image.strip(),
                file=file,
                line=line_of(node),
                kind="service",
                name=name,
                hint=hint,
            )
        )
    return sorted(found, key=lambda image: image.line)
