"""Deployment files on disk (or stdin) → the images they use.

Which extractor reads a file is decided by its name (``Dockerfile*``, ``*.dockerfile``,
podman's ``Containerfile*``, ``compose*.y*ml``, ``docker-compose*.y*ml``), else by its
content: other YAML/JSON is
compose when it is one mapping with ``services``, else a stream of Kubernetes objects;
a file named on the command line that is neither YAML nor JSON by name is a
Dockerfile when its first instruction is ``FROM`` or ``ARG``. A folder is searched
recursively (hidden files and folders, ``.git`` among them, and the ``templates/`` of a
Helm chart are skipped) for Dockerfiles, compose files and ``*.yaml``/``*.yml``/``*.json``;
a chart is checked as rendered: ``helm template … | regmon check -f -``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from typing import BinaryIO

from monitor.errors import InputError
from monitor.sources.found import FoundImage

__all__ = [
    "MAX_FILE_BYTES",
    "STDIN",
    "file_kind",
    "images_in_paths",
    "images_in_text",
    "walk_folder",
]

# `kubectl get … -A -o yaml` of a large cluster runs to tens of MiB; more than this
# is not a deployment file but a mistake (or an attack), refused before parsing.
MAX_FILE_BYTES = 64 * 1024 * 1024
STDIN = "-"
STDIN_NAME = "<stdin>"

_DOCKERFILE_NAMES = (
    "Dockerfile*", "dockerfile*", "*.dockerfile", "*.Dockerfile", "Containerfile*",
)  # fmt: skip
_COMPOSE_NAMES = ("compose*.yaml", "compose*.yml", "docker-compose*.yaml", "docker-compose*.yml")
_FIRST_INSTRUCTION = re.compile(r"(FROM|ARG)\s", re.IGNORECASE)


def file_kind(name: str) -> str | None:
    """``dockerfile``, ``compose``, ``yaml``, ``json`` by file name, else None."""
    base = os.path.basename(name)
    if base.endswith(".dockerignore"):
        return None
    if any(fnmatch.fnmatchcase(base, pattern) for pattern in _DOCKERFILE_NAMES):
        return "dockerfile"
    if any(fnmatch.fnmatchcase(base, pattern) for pattern in _COMPOSE_NAMES):
        return "compose"
    lower = base.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".json"):
        return "json"
    return None


def images_in_paths(
    paths: Iterable[str], environ: Mapping[str, str], stdin: BinaryIO | None = None
) -> list[FoundImage]:
    """Every image used in ``paths`` (files, folders, ``-`` for ``stdin``), in order."""
    found: list[FoundImage] = []
    for path in paths:
        if path == STDIN:
            if stdin is None:
                raise InputError("-: no standard input to read")
            text = _read_stdin(stdin)
            found.extend(images_in_text(text, STDIN_NAME, None, os.getcwd(), environ))
            continue
        if os.path.isdir(path):
            for file in walk_folder(path):
                found.extend(_images_in_file(file, file_kind(file), environ))
            continue
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or folder")
        found.extend(_images_in_file(path, file_kind(path), environ))
    return found


def walk_folder(folder: str) -> Iterable[str]:
    """The deployment files in ``folder`` and below, as ``-f FOLDER`` reads them."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "Chart.yaml" in files and "templates" in dirs:
            # A Helm chart's templates are Go templates, not YAML, until `helm template`.
            dirs.remove("templates")
        for name in sorted(files):
            if not name.startswith(".") and file_kind(name) is not None:
                yield os.path.normpath(os.path.join(root, name))


def _images_in_file(path: str, kind: str | None, environ: Mapping[str, str]) -> list[FoundImage]:
    from monitor.yamlsafe import read_text

    text = _text_only(read_text(path, max_bytes=MAX_FILE_BYTES), path)
    return images_in_text(text, path, kind, os.path.dirname(path) or ".", environ)


def images_in_text(
    text: str, file: str, kind: str | None, folder: str, environ: Mapping[str, str]
) -> list[FoundImage]:
    """The images in one file's text; ``kind`` as from :func:`file_kind` (None: decide by
    content). ``folder`` is where a compose file's ``.env`` would be."""
    if kind is None:
        kind = _kind_by_content(text)
    if kind == "dockerfile":
        from monitor.sources.dockerfile import images_in_dockerfile

        return images_in_dockerfile(text, file)
    from monitor.sources._nodes import documents
    from monitor.sources.compose import images_in_compose, is_compose
    from monitor.sources.kubernetes import images_in_objects

    docs = documents(text, file, is_json=kind == "json")
    if kind == "compose" or is_compose(docs):
        variables = {**read_dotenv(os.path.join(folder, ".env")), **environ}
        return images_in_compose(docs, file, variables)
    return images_in_objects(docs, file)


def _kind_by_content(text: str) -> str:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("{", "[")):
            return "json" if _is_json(text) else "yaml"  # a YAML flow mapping starts so too
        if _FIRST_INSTRUCTION.match(line):
            return "dockerfile"
        break
    return "yaml"


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def read_dotenv(path: str) -> dict[str, str]:
    """The variables of a ``.env`` file (python-dotenv's parser: quotes, ``export``,
    comments, ``${VAR}`` inside values); empty when there is none."""
    if not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, interpolate=True, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return {key: value for key, value in values.items() if value is not None}


def _read_stdin(stdin: BinaryIO) -> str:
    from monitor.yamlsafe import read_stream

    return _text_only(read_stream(stdin, STDIN_NAME, max_bytes=MAX_FILE_BYTES), STDIN_NAME)


def _text_only(text: str, name: str) -> str:
    # The YAML loader refuses NUL bytes itself; a Dockerfile parser would not.
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(f"{name}: line {line}: contains a NUL byte; not a text file")
    return text
