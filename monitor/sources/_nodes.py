"""Composed YAML nodes (they keep line marks) for the extractors: parsing through the
one bounded loader, and lookups that honour merge keys (``<<: *defaults``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import yaml

from monitor.errors import DeploymentFileError

__all__ = ["documents", "line_of", "lookup", "mapping_items", "scalar"]


def documents(text: str, file: str, *, is_json: bool = False) -> list[yaml.Node]:
    """Every non-empty document of a YAML (or JSON) stream, as nodes.

    JSON is checked by ``json`` first (its errors name line and column); then tabs,
    which JSON allows between tokens and YAML does not, become spaces (a tab inside a
    JSON string is always escaped), and the YAML loader gives the nodes their lines.
    """
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeploymentFileError(f"{file}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
        text = text.replace("\t", " ")
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.CSafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = exc.problem or exc.context or "not valid YAML"
        raise DeploymentFileError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise DeploymentFileError(f"{file}: {str(exc).splitlines()[0]}") from None
    return [node for node in nodes if not _is_null(node)]


_MERGE = "tag:yaml.org,2002:merge"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def mapping_items(node: yaml.Node, depth: int = 0) -> Iterator[tuple[str, yaml.Node]]:
    """Key text and value of a mapping, merge keys included (own keys first, as YAML
    says an explicit key wins over a merged one)."""
    if not isinstance(node, yaml.MappingNode):
        return
    merged: list[yaml.Node] = []
    for key, value in node.value:
        if key.tag == _MERGE:
            merged.extend(value.value if isinstance(value, yaml.SequenceNode) else [value])
            continue
        if isinstance(key, yaml.ScalarNode):
            yield str(key.value), value
    if depth < 8:  # merges of merges; deeper chains are not what compose files hold
        for source in merged:
            yield from mapping_items(source, depth + 1)


def lookup(node: yaml.Node | None, *path: str) -> yaml.Node | None:
    """The node at ``path`` below a mapping, or None when any step is absent or null."""
    for key in path:
        if node is None or not isinstance(node, yaml.MappingNode):
            return None
        node = _child(node, key)
        if node is not None and _is_null(node):
            return None
    return node


def _child(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    merges = False
    # The plain loop first: manifests rarely merge, and this runs for every step.
    for name, value in node.value:
        if name.value == key and name.tag != _MERGE:
            return value  # type: ignore[no-any-return]
        merges = merges or name.tag == _MERGE
    if not merges:
        return None
    return next((value for name, value in mapping_items(node) if name == key), None)


def scalar(node: yaml.Node | None) -> str | None:
    """The text of a scalar node; None for anything else."""
    if isinstance(node, yaml.ScalarNode) and not _is_null(node):
        return str(node.value)
    return None
