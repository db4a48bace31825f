"""Images in Kubernetes objects: any YAML/JSON stream (``kubectl apply -f`` input,
``helm template`` and ``kustomize build`` output, ``kubectl get -o yaml|json``).

Every pod template counts (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob, PodTemplate), with its ``initContainers``,
``containers`` and ``ephemeralContainers``. ``List`` and ``*List`` objects are
opened (``kubectl get`` output; a ``DeploymentList`` from the API has items without
``kind``). Other kinds, and documents without one, are skipped: a stream of
ConfigMaps and Services holds no images.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from monitor.errors import InputError
from monitor.sources._nodes import line_of, lookup, scalar
from monitor.sources.found import FoundImage

__all__ = ["POD_SPEC_PATHS", "images_in_objects", "is_kubernetes"]

# Where each kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
_MAX_LIST_DEPTH = 4


def is_kubernetes(documents: list[yaml.Node]) -> bool:
    """True when some document is a mapping with a ``kind`` and an ``apiVersion``."""
    return any(
        scalar(lookup(doc, "kind")) is not None and scalar(lookup(doc, "apiVersion")) is not None
        for doc in documents
    )


def images_in_objects(documents: list[yaml.Node], file: str) -> list[FoundImage]:
    """Every container image of every pod template in ``documents``, in file order."""
    found: list[FoundImage] = []
    for doc in documents:
        found.extend(_object_images(doc, file, None, 0))
    return sorted(found, key=lambda image: image.line)


def _object_images(
    node: yaml.Node, file: str, item_kind: str | None, depth: int
) -> Iterator[FoundImage]:
    if not isinstance(node, yaml.MappingNode):
        return
    kind = scalar(lookup(node, "kind")) or item_kind
    if kind is None:
        return
    if kind.endswith("List") and depth < _MAX_LIST_DEPTH:
        items = lookup(node, "items")
        if items is None:
            return
        if not isinstance(items, yaml.SequenceNode):
            if kind != "List":
                return  # some other kind whose name ends so (a CRD's AccessList)
            raise InputError(f"{file}: line {line_of(items)}: List items is not a list")
        # A typed list (DeploymentList) leaves out each item's kind.
        inner = kind[: -len("List")] or None
        for item in items.value:
            yield from _object_images(item, file, inner, depth + 1)
        return
    path = POD_SPEC_PATHS.get(kind)
    if path is None:
        return
    namespace = scalar(lookup(node, "metadata", "namespace"))
    name = scalar(lookup(node, "metadata", "name"))
    spec = lookup(node, *path)
    if spec is None:
        return
    where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
    if not isinstance(spec, yaml.MappingNode):
        raise InputError(f"{file}: line {line_of(spec)}: {where}: the pod spec is not a mapping")
    for field in CONTAINER_FIELDS:
        containers = lookup(spec, field)
        if containers is None:
            continue
        if not isinstance(containers, yaml.SequenceNode):
            raise InputError(f"{file}: line {line_of(containers)}: {where}: {field} is not a list")
        for container in containers.value:
            cname = scalar(lookup(container, "name"))
            image_node = lookup(container, "image")
            if image_node is None:
                continue  # an ephemeral container being defined, or a kustomize patch base
            image = scalar(image_node)
            if not image or not isinstance(image_node, yaml.ScalarNode):
                raise InputError(
                    f"{file}: line {line_of(image_node)}: {where} container {cname}: "
                    "image is empty or not a string"
                )
            yield FoundImage(
                image=image.strip(),
                file=file,
                line=line_of(image_node),
                kind=kind,
                namespace=namespace,
                name=name,
                container=cname,
            )
