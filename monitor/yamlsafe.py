"""The one way regmon reads YAML (config files and deployment files), bounded.

PyYAML's safe loader runs no code, but it is not safe against resource
exhaustion, and config and deployment files come from users (a deployment file
may be a cluster dump on stdin):

- ten thousand nested brackets recurse in the composer (``RecursionError``; the
  C composer recurses on the C stack);
- "billion laughs" aliases build a small graph that expands exponentially in
  whatever walks the data afterwards (interpolation, validation, extraction);
- a NUL byte, or ``/dev/zero`` as a file name, is a reader error or never ends.

So every document is read as libyaml's events in one pass, which counts nesting
depth and the size of the data *as expanded* (an alias counts the whole subtree it
names), refuses an alias inside the collection it names (a cycle), and stops at the
first limit crossed. ``load_document`` builds the data in
that same pass (a 50,000-watch config: ~0.7 s instead of ~2 s for a bounds pass,
libyaml's composer and PyYAML's constructor); a document it does not build itself
(an explicit tag, an error of any kind) goes the long way, bounds pass first, so
every error keeps the one message it had. Every failure is one line: ``source:
line L, column C: what``; the offending text is never quoted (a config line may
hold a secret).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import yaml

from monitor.errors import InputError, UsageError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "compose_documents",
    "load_document",
    "read_text",
    "to_data",
]

MAX_DEPTH: Final = 100  # a rendered Kubernetes pod template nests about 12 deep
MAX_NODES: Final = 2_000_000  # nodes after alias expansion: a 50,000-watch config is ~400k

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(_Loader):  # type: ignore[misc]
    """The safe loader, refusing a key written twice in one mapping (YAML says it is an error)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_shown(key)}", key_node.start_mark
                )
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def read_text(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    error: type[UsageError] = InputError,
    what: str = "file",
) -> str:
    """The UTF-8 text of the regular file at ``path``, refusing more than ``max_bytes``.

    Reads at most ``max_bytes + 1`` bytes, so a device or FIFO (``/dev/zero``) ends
    in one line instead of a ``MemoryError``.
    """
    source = os.fspath(path)
    try:
        if not Path(source).is_file() and Path(source).exists():
            raise error(f"{source}: not a regular {what}")
        with open(source, "rb") as stream:
            return read_stream(stream, source, max_bytes=max_bytes, error=error)
    except FileNotFoundError:
        raise error(f"{source}: no such {what}") from None
    except PermissionError:
        raise error(f"{source}: permission denied") from None
    except IsADirectoryError:
        raise error(f"{source}: is a directory, expected a YAML {what}") from None
    except OSError as exc:
        raise error(f"{source}: cannot read: {exc.strerror or type(exc).__name__}") from None


def read_stream(
    stream: IO[bytes], source: str, *, max_bytes: int, error: type[UsageError] = InputError
) -> str:
    """Up to ``max_bytes`` of ``stream`` as UTF-8 text; more is an error, not a truncation."""
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise error(f"{source}: larger than {_size(max_bytes)}, refused")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{source}: line {line}: not UTF-8 text") from None


def load_document(
    text: str,
    source: str,
    *,
    error: type[UsageError] = InputError,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """The data of the single YAML document ``text``; a key written twice is an error."""
    try:
        return _build(text, max_depth, max_nodes)
    except _Slow:
        return _load_composed(text, source, error, max_depth, max_nodes)


def _load_composed(
    text: str, source: str, error: type[UsageError], max_depth: int, max_nodes: int
) -> Any:
    """The long way: a bounds pass, libyaml's composer, PyYAML's constructor."""
    _check_bounds(text, source, error, max_depth, max_nodes)
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise error(_describe(exc, source, text)) from None
    except ValueError as exc:
        raise error(_value_error(exc, source)) from None
    finally:
        loader.dispose()


class _Slow(Exception):
    """The document needs what only PyYAML's composer and constructor do, or has an error
    whose message they make."""


_PLAIN_SCALARS: Final = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_COLLECTION_TAGS: Final = (None, "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
_NO_KEY: Final = object()
_SCALAR, _ALIAS, _SEQUENCE, _MAPPING, _END = range(5)
_KINDS: Final = {
    yaml.ScalarEvent: _SCALAR,
    yaml.AliasEvent: _ALIAS,
    yaml.SequenceStartEvent: _SEQUENCE,
    yaml.MappingStartEvent: _MAPPING,
    yaml.SequenceEndEvent: _END,
    yaml.MappingEndEvent: _END,
}


def _build(text: str, max_depth: int, max_nodes: int) -> Any:
    """The data of the single document ``text``, built straight from libyaml's events and
    counted as ``_check_bounds`` counts; ``_Slow`` at the first thing it leaves to the
    long way: any error or crossed bound, an explicit tag, a scalar that is not a string,
    number, boolean, null or timestamp, a merge key (``<<``: PyYAML's merge order and
    precedence are its own).

    Equal to what ``_UniqueKeyLoader`` builds: an alias is the anchored object itself.
    """
    loader = _Loader(text)
    get_event = loader.get_event
    resolvers = loader.yaml_implicit_resolvers
    constructors = loader.yaml_constructors
    kinds = _KINDS
    # One open collection: [container, anchor, expanded size, pending key]; a mapping's
    # pending key is _NO_KEY between entries.
    stack: list[list[Any]] = []
    anchors: dict[str, tuple[Any, int]] = {}
    nodes = 0
    root: Any = None
    try:
        get_event()  # StreamStartEvent
        if not isinstance(get_event(), yaml.DocumentStartEvent):
            return None  # an empty stream
        while True:
            event = get_event()
            kind = kinds.get(type(event))
            if kind == _SCALAR:
                if event.tag is not None:
                    raise _Slow
                value = event.value
                if event.implicit[0]:  # plain: its tag is resolved from its text
                    for tag, pattern in resolvers.get(value[:1], ()):
                        if pattern.match(value):
                            if tag not in _PLAIN_SCALARS:
                                raise _Slow
                            node = yaml.ScalarNode(tag, value, event.start_mark)
                            value = constructors[tag](loader, node)
                            break
                size = 1
                if event.anchor is not None:
                    if event.anchor in anchors:
                        raise _Slow
                    anchors[event.anchor] = (value, 1)
            elif kind == _ALIAS:
                found = anchors.get(event.anchor)
                if found is None or found[1] == 0:  # undefined, or a collection still open
                    raise _Slow
                value, size = found
            elif kind == _SEQUENCE or kind == _MAPPING:
                if event.tag not in _COLLECTION_TAGS or len(stack) >= max_depth:
                    raise _Slow
                nodes += 1
                if nodes > max_nodes:
                    raise _Slow
                container: Any = [] if kind == _SEQUENCE else {}
                if event.anchor is not None:
                    if event.anchor in anchors:
                        raise _Slow
                    anchors[event.anchor] = (container, 0)
                stack.append([container, event.anchor, 1, _NO_KEY])
                continue
            elif kind == _END:
                value, anchor, size, _ = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (value, size)
            else:  # DocumentEndEvent: the stream must end here
                if not isinstance(get_event(), yaml.StreamEndEvent):
                    raise _Slow
                return root
            if kind != _END:
                nodes += size
                if nodes > max_nodes:
                    raise _Slow
            if not stack:
                root = value
                continue
            parent = stack[-1]
            parent[2] += size
            container = parent[0]
            if type(container) is list:
                container.append(value)
            elif parent[3] is _NO_KEY:
                parent[3] = value  # a key: its value comes next
            else:
                key, parent[3] = parent[3], _NO_KEY
                if key in container:  # a TypeError if unhashable: the long way's message
                    raise _Slow
                container[key] = value
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise _Slow from exc
    finally:
        loader.dispose()


def compose_documents(
    text: str,
    source: str,
    *,
    error: type[UsageError] = InputError,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> list[yaml.Node]:
    """The node trees of every document in the stream ``text``, with line marks.

    Empty documents (``---`` twice, a file of comments) are left out. A node's
    ``start_mark.line`` is 0-based; ``to_data`` turns a node into plain data.
    """
    _check_bounds(text, source, error, max_depth, max_nodes)
    loader = _Loader(text)
    try:
        documents: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None and not _is_empty(node):
                documents.append(node)
        return documents
    except yaml.YAMLError as exc:
        raise error(_describe(exc, source, text)) from None
    finally:
        loader.dispose()


def to_data(
    node: yaml.Node, source: str = "<yaml>", *, error: type[UsageError] = InputError
) -> Any:
    """Plain Python data for a node of ``compose_documents`` (bounds already checked)."""
    try:
        return yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        raise error(_describe(exc, source, "")) from None
    except ValueError as exc:
        raise error(_value_error(exc, source)) from None


def _value_error(exc: ValueError, source: str) -> str:
    # PyYAML's int() of a number longer than Python's limit (4300 digits), and the like.
    return _one_line(f"{source}: invalid YAML: {str(exc).split(';')[0]}")


def _is_empty(node: yaml.Node) -> bool:
    """An empty document (``---`` twice, only comments) composes to an implicit null."""
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:null"
        and node.value == ""
    )


def _check_bounds(
    text: str, source: str, error: type[UsageError], max_depth: int, max_nodes: int
) -> None:
    """One pass over the events: nesting depth and alias-expanded size, before composing."""
    open_collections: list[list[Any]] = []  # [anchor, expanded size] per open collection
    anchored: dict[str, int] = {}
    nodes = 0
    try:
        for event in _events(text):
            if isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor:
                    anchored[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                if any(anchor == event.anchor for anchor, _ in open_collections):
                    # A cycle: everything that walks the data would recurse forever.
                    raise error(
                        f"{source}: {_where(event.start_mark)}an alias inside the collection"
                        " it names, refused"
                    )
                size = anchored.get(event.anchor or "", 1)
            if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                nodes += size
                if open_collections:
                    open_collections[-1][1] += size
            elif isinstance(event, yaml.CollectionStartEvent):
                nodes += 1
                open_collections.append([event.anchor, 1])
                if len(open_collections) > max_depth:
                    raise error(
                        f"{source}: {_where(event.start_mark)}nested deeper than {max_depth}"
                        " levels, refused"
                    )
            elif isinstance(event, yaml.CollectionEndEvent) and open_collections:
                anchor, size = open_collections.pop()
                if anchor:
                    anchored[anchor] = size
                if open_collections:
                    open_collections[-1][1] += size
            if nodes > max_nodes:
                raise error(
                    f"{source}: {_where(event.start_mark)}more than {max_nodes:,} values once"
                    " aliases are expanded, refused"
                )
    except yaml.YAMLError as exc:
        raise error(_describe(exc, source, text)) from None


def _events(text: str) -> Iterator[yaml.Event]:
    loader = _Loader(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def _describe(exc: yaml.YAMLError, source: str, text: str) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return _one_line(
            f"{source}: line {line}, column {column}: invalid YAML: unacceptable character"
            f" #x{exc.character if isinstance(exc.character, int) else ord(exc.character):04x}"
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        # problem/context describe the syntax; str(exc) would quote the line, maybe a secret.
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        return _one_line(f"{source}: {_where(mark)}invalid YAML: {what}")
    return _one_line(f"{source}: invalid YAML: {type(exc).__name__}")


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def _one_line(message: str) -> str:
    return " ".join(message.split())
