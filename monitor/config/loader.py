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
from monitor.yamlsafe import load_document, read_text

__all__ = ["CONFIG_LIMIT", "default_config", "interpolate", "load_config", "parse_config"]

# 50,000 watches written one a line are about 3 MiB.
CONFIG_LIMIT: Final = 8 * 1024 * 1024

_INTERPOLATION = re.compile(r"\$(\$)?\{([^}]*)\}")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\Z", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Longest first: ":-" must not be read as "-" after a name ending in ":".
_COMPOSE_OPERATORS: Final = (":-", ":?", ":+", "-", "?", "+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def default_config() -> Config:
    """No watches, every default: what ``regmon check`` uses without ``--config``."""
    return Config()


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, interpolate and validate the config file at ``path``.

    Relative paths in it (the SQLite database, ``*_file``, ``ca_file``,
    ``docker_config``) resolve against the file's folder, and a ``password_file``,
    ``secret_file`` or ``ca_file`` that cannot be read is refused, naming its key.
    """
    source = os.fspath(path)
    text = read_text(source, max_bytes=CONFIG_LIMIT, error=ConfigError)
    folder = os.path.dirname(os.path.abspath(source))
    config = parse_config(text, source=source, folder=folder)
    warn_if_database_moved(config, folder)
    return config


def parse_config(text: str, source: str = "<string>", *, folder: str | None = None) -> Config:
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
    data = _interpolate_values(data, (), problems, os.environ)
    if problems:
        raise ConfigError(one_line(f"{source}: " + joined(problems)))
    try:
        config = Config.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        details = joined([_describe(error) for error in exc.errors(include_url=False)])
        raise ConfigError(one_line(f"{source}: {details}")) from None
    config._source = source
    return config


# --------------------------------------------------------------------------- interpolation


def interpolate(
    text: str, variables: Mapping[str, str], *, compose: bool = False
) -> tuple[str, list[str]]:
    """``text`` with variables from ``variables`` substituted, and what was wrong.

    The config's syntax (default): ``${NAME}`` (an error when unset) and
    ``${NAME:-default}`` (the default when unset or empty); ``$${`` is a literal
    ``${``; any other ``$`` stays as written.

    ``compose=True`` is the docker compose syntax: ``$NAME`` and ``${NAME}`` (empty
    when unset), ``${NAME:-default}`` / ``${NAME-default}`` (when unset or empty /
    unset), ``${NAME:?error}`` / ``${NAME?error}`` (an error), ``${NAME:+other}`` /
    ``${NAME+other}`` (``other`` when set), defaults themselves interpolated, and
    ``$$`` a literal ``$``.

    Problems are one-line messages without a location; a part in error is
    replaced by nothing.
    """
    problems: list[str] = []
    if compose:
        return _compose(text, variables, problems), problems

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        variable = _VARIABLE.match(match.group(2))
        if variable is None:
            problems.append("invalid interpolation, expected ${NAME} or ${NAME:-default}")
            return ""
        name, default = variable.group(1), variable.group(2)
        found = variables.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                problems.append(
                    f"environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
                return ""
            return default
        return found

    return _INTERPOLATION.sub(replace, text), problems


def _compose(text: str, variables: Mapping[str, str], problems: list[str]) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        dollar = text.find("$", index)
        if dollar < 0:
            out.append(text[index:])
            break
        out.append(text[index:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            index = dollar + 2
        elif following == "{":
            end = _closing_brace(text, dollar + 2)
            if end is None:
                problems.append("invalid interpolation: '${' without its '}'")
                break
            out.append(_braced(text[dollar + 2 : end], variables, problems))
            index = end + 1
        elif (name := _NAME.match(text, dollar + 1)) is not None:
            out.append(variables.get(name.group(0), ""))
            index = name.end()
        else:
            out.append("$")
            index = dollar + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """Where the ``}`` closing a ``${`` opened just before ``start`` is (nesting counted)."""
    depth, index = 0, start
    while index < len(text):
        if text.startswith("$$", index):
            index += 2
            continue
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return None


def _braced(body: str, variables: Mapping[str, str], problems: list[str]) -> str:
    name_match = _NAME.match(body)
    rest = body[name_match.end() :] if name_match else body
    operator = next((op for op in _COMPOSE_OPERATORS if rest.startswith(op)), None)
    if name_match is None or (rest and operator is None):
        problems.append(f"invalid interpolation {shown('${' + body + '}')}")
        return ""
    name, found = name_match.group(0), variables.get(name_match.group(0))
    if operator is None:
        return found or ""
    argument = rest[len(operator) :]
    present = found is not None and (found != "" or ":" not in operator)
    if operator.endswith("-"):
        return found if present and found is not None else _compose(argument, variables, problems)
    if operator.endswith("+"):
        return _compose(argument, variables, problems) if present else ""
    if not present:  # "?" and ":?"
        detail = _compose(argument, variables, problems)
        problems.append(
            f"required variable {name} is missing a value" + (f": {detail}" if detail else "")
        )
        return ""
    return found or ""


def _interpolate_values(
    value: object,
    loc: tuple[str | int, ...],
    problems: list[str],
    variables: Mapping[str, str],
) -> object:
    """Interpolate every string value (never a key) of a YAML document."""
    if isinstance(value, str):
        text, found = interpolate(value, variables)
        problems.extend(f"{_format_loc(loc)}: {problem}" for problem in found)
        return text
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
