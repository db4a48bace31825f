"""Composed YAML nodes (they keep line marks) for the extractors: parsing through the
one bounded loader, and lookups that honour merge keys (``<<: *defaults``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import yaml

from monitor.errors import InputError
from monitor.yamlsafe import compose_documents

__all__ = ["documents", "line_of", "lookup", "mapping_items", "scalar"]


def documents(text: str, file: str, *, is_json: bool = False) -> list[yaml.Node]:
    """Every non-empty document of a YAML (or JSON) stream, as nodes, through the one
    bounded loader (size, depth and alias-expansion caps; one-line errors).

    JSON goes through the same loader for its line marks, with tabs, which JSON allows
    between tokens and YAML does not, made spaces (a tab inside a JSON string is always
    escaped); ``json`` then checks it is JSON, and names line and column if not.
    """
    if not is_json:
        return compose_documents(text, file)
    try:
        nodes = compose_documents(text.replace("\t", " "), file)
    except InputError:
        _check_json(text, file)  # invalid JSON: say what JSON says
        raise
    _check_json(text, file)  # YAML accepts more than JSON (trailing commas, comments)
    return nodes


def _check_json(text: str, file: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{file}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    except RecursionError:
        pass  # nested past any limit: the loader's own refusal is the message


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
