"""Read a config file: bounded YAML → ``${ENV}`` interpolation → one validation pass.

Pipeline: read the file → ``monitor.yamlsafe`` (bounded safe loader that also
refuses duplicate keys) → ``${ENV}`` / ``${ENV:-default}`` interpolation on
string values only (so a secret holding YAML-special characters stays a plain
string) → one pydantic validation pass. Every failure becomes one
``ConfigError`` whose one-line message names the file, each failing key path
(``watch[2].interval``) and what was expected, never a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from monitor.config.messages import joined, one_line, shown
from monitor.config.resolve import warn_if_database_moved
from monitor.config.schema import Config
from monitor.errors import ConfigError
from monitor.interpolation import SubstitutionError, substitute
from monitor.yamlsafe import load_document, read_text

__all__ = ["CONFIG_LIMIT", "default_config", "load_config", "parse_config"]

# 50,000 watches written one a line are about 3 MiB.
CONFIG_LIMIT: Final = 8 * 1024 * 1024

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def default_config() -> Config:
    """No watches, every default: what ``regmon check`` uses without ``--config``."""
    return Config()


def load_config(path: str | os.PathLike[str], *, channels: bool = True) -> Config:
    """Read, interpolate and validate the config file at ``path``.

    ``channels=False`` (``regmon check``/``wait``, which send nothing) checks an
    ``apprise:`` URL's form only, so the heavy ``apprise`` is not imported.

    Relative paths in it (the SQLite database, ``*_file``, ``ca_file``,
    ``docker_config``) resolve against the file's folder, and a ``password_file``,
    ``secret_file`` or ``ca_file`` that cannot be read is refused, naming its key.
    """
    source = os.fspath(path)
    text = read_text(source, max_bytes=CONFIG_LIMIT, error=ConfigError)
    folder = os.path.dirname(os.path.abspath(source))
    config = parse_config(text, source=source, folder=folder, channels=channels)
    warn_if_database_moved(config, folder)
    return config


def parse_config(
    text: str, source: str = "<string>", *, folder: str | None = None, channels: bool = True
) -> Config:
    """Validate the YAML document ``text``; ``source`` names it in error messages.

    ``folder`` is where the document lives on this machine: relative paths in it
    (the SQLite database, ``*_file``, ``docker_config``) resolve against it, and
    the secret and CA files it names must be readable now. Without it, paths stay
    as written and files are only read when needed.
    """
    data = load_document(text, source, error=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    problems: list[str] = []
    # A "$" in a value is in the text, or a double-quoted escape ("\x24"): without
    # either, nothing is interpolated (50,000 watches: a walk of ~0.15 s saved).
    if "$" in text or "\\" in text:
        data = _interpolate_values(data, (), problems, os.environ)
    if problems:
        raise ConfigError(one_line(f"{source}: " + joined(problems)))
    try:
        config = Config.model_validate(data, context={"folder": folder, "channels": channels})
    except ValidationError as exc:
        details = joined([_describe(error) for error in exc.errors(include_url=False)])
        raise ConfigError(one_line(f"{source}: {details}")) from None
    config._source = source
    return config


# --------------------------------------------------------------------------- interpolation


def _interpolate_values(
    value: object,
    loc: tuple[str | int, ...],
    problems: list[str],
    variables: Mapping[str, str],
) -> object:
    """Interpolate every string value (never a key) of a YAML document (``${ENV}``,
    ``${ENV:-default}``), collecting every problem with its key path."""
    if isinstance(value, str):
        try:
            return substitute(value, variables, dialect="regmon").value
        except SubstitutionError as exc:
            problems.extend(f"{_format_loc(loc)}: {problem}" for problem in exc.problems)
            return ""
    if isinstance(value, dict):
        return {
            key: _interpolate_values(item, (*loc, key), problems, variables)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate_values(item, (*loc, index), problems, variables)
            for index, item in enumerate(value)
        ]
    return value


# --------------------------------------------------------------------------- messages


_MESSAGES: Final = {
    "missing": "a value is required",
    "extra_forbidden": "unknown key",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "mapping_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "iterable_type": "expected a list",
}
_BOUNDS: Final = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as ``key.path: what was expected``, never echoing a secret."""
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in ("value_error", "assertion_error"):
        message = str(context.get("error", error["msg"]))
        if not error["loc"] and re.match(r"[\w\[\]'.:-]+: ", message):
            return message  # cross-reference problems already name their key paths
    elif kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind in _BOUNDS:
        bound = next(iter(context.values()), "?")
        message = f"expected a number {_BOUNDS[kind]} {bound}"
    elif kind == "literal_error":
        # Only enumerations (log level, format, method) are literals: safe to echo.
        expected = context.get("expected", "one of the listed values")
        message = f"expected {expected} (got {shown(error['input'])})"
    elif kind == "string_type":
        quoted = " (quote the value)" if isinstance(error["input"], int | float) else ""
        message = f"expected a string{quoted}"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    path = _format_loc(error["loc"])
    return f"{path}: {message}" if path else message


def _format_loc(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _KEY.match(item):
            parts.append(f".{item}" if parts else item)
        else:
            parts.append(f"[{item!r}]")
    return "".join(parts)
