"""``$VAR`` / ``${VAR...}`` substitution in the three dialects regmon reads (pure).

``regmon``: its own config file. Only ``${VAR}`` (an error when unset) and
``${VAR:-default}`` (the default when unset or empty); ``$${`` is a literal ``${``
and any other ``$`` stays as written. Every problem in a string is reported.

``compose`` (compose-go ``template``) and ``dockerfile`` (BuildKit's shell lexer), for
the few strings that name images. Both know ``${VAR}``, ``${VAR:-default}`` /
``${VAR-default}`` (unset or empty / unset), ``${VAR:+alt}`` / ``${VAR+alt}`` and
``${VAR:?error}`` / ``${VAR?error}``; the word after the operator is itself
substituted, only when it is used. Compose escapes ``$`` as ``$$`` and refuses any
other ``$`` that starts no variable; a Dockerfile escapes with its escape character
(``\\$``) and keeps a lone ``$``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Dialect", "Substitution", "SubstitutionError", "substitute"]

Dialect = Literal["regmon", "compose", "dockerfile"]
_REGMON = re.compile(r"\$(\$)?\{([^}]*)\}")
_REGMON_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\Z", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")


class SubstitutionError(ValueError):
    """A malformed or failing substitution; the message is for users, one line per
    problem in ``problems`` (``regmon`` reports them all, the others the first)."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Substitution:
    value: str
    unset: list[str] = field(default_factory=list)


def substitute(
    text: str,
    variables: Mapping[str, str],
    *,
    dialect: Dialect,
    escape: str = "\\",
) -> Substitution:
    """``text`` with its variables replaced; ``unset`` lists variables used but not set
    (``regmon``: none, an unset variable without a default is an error).

    ``escape`` is a Dockerfile's escape character.
    """
    if dialect == "regmon":
        return Substitution(_regmon(text, variables))
    result = Substitution("")
    result.value = _expand(text, variables, dialect, escape, result)
    return result


def _expand(
    text: str, variables: Mapping[str, str], dialect: str, escape: str, out: Substitution
) -> str:
    parts: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if dialect == "dockerfile" and char == escape and i + 1 < n and text[i + 1] == "$":
            parts.append("$")
            i += 2
            continue
        if char != "$":
            parts.append(char)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if dialect == "compose" and nxt == "$":
            parts.append("$")
            i += 2
            continue
        if nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise SubstitutionError(f"invalid interpolation format in {text!r}: no closing }}")
            parts.append(_braced(text[i + 2 : end], text, variables, dialect, escape, out))
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match:
            parts.append(_lookup(match.group(), variables, out) or "")
            i = match.end()
            continue
        if dialect == "compose":
            raise SubstitutionError(
                f"invalid interpolation format in {text!r}: escape a literal $ as $$"
            )
        parts.append("$")
        i += 1
    return "".join(parts)


def _regmon(text: str, variables: Mapping[str, str]) -> str:
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        variable = _REGMON_VARIABLE.match(match.group(2))
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

    value = _REGMON.sub(replace, text)
    if problems:
        raise SubstitutionError(*problems)
    return value


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _lookup(name: str, variables: Mapping[str, str], out: Substitution) -> str | None:
    value = variables.get(name)
    if value is None and name not in out.unset:
        out.unset.append(name)
    return value


def _braced(
    body: str,
    text: str,
    variables: Mapping[str, str],
    dialect: str,
    escape: str,
    out: Substitution,
) -> str:
    match = _NAME.match(body)
    if not match:
        raise SubstitutionError(f"invalid interpolation format in {text!r}: ${{{body}}}")
    name = match.group()
    rest = body[match.end() :]
    if not rest:
        return _lookup(name, variables, out) or ""
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise SubstitutionError(f"unsupported substitution ${{{body}}} in {text!r}")
    word = rest[len(operator) :]
    value = variables.get(name)
    # ":" makes an empty value count as unset, as in POSIX sh.
    missing = value is None or (operator.startswith(":") and value == "")
    kind = operator[-1]
    if kind == "-":
        return _expand(word, variables, dialect, escape, out) if missing else (value or "")
    if kind == "+":
        return "" if missing else _expand(word, variables, dialect, escape, out)
    if missing:
        why = _expand(word, variables, dialect, escape, out)
        raise SubstitutionError(
            f"required variable {name} is missing a value" + (f": {why}" if why else "")
        )
    return value or ""
