"""Images a Dockerfile builds from: ``FROM`` (with the ``ARG`` defaults declared before
the first ``FROM``), ``COPY --from=<image>`` and ``RUN --mount=…,from=<image>``.

Parsing is BuildKit's own parser (the ``dockerfile`` package wraps it): line
continuations, heredocs and the ``# escape=`` directive behave as in ``docker build``.
``scratch``, earlier stage names (case-insensitive, as BuildKit) and stage indices
are not images. An ``ARG`` without a default leaves its ``FROM`` undecidable here
(it is a ``--build-arg``): that is an error naming the line, not a silent skip.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from monitor.errors import InputError
from monitor.interpolation import SubstitutionError, substitute
from monitor.sources.found import FoundImage

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["INSTRUCTIONS", "images_in_dockerfile"]

INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip
_ESCAPE_DIRECTIVE = re.compile(r"#\s*escape\s*=\s*(\S)", re.IGNORECASE)
_DIRECTIVE = re.compile(r"#\s*[A-Za-z]+\s*=")


def images_in_dockerfile(text: str, file: str) -> list[FoundImage]:
    import dockerfile

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise InputError(f"{file}: {exc}") from None
    escape = _escape_character(text)
    global_args: dict[str, str] = {}
    stage_args: dict[str, str] = {}
    stages: list[str] = []  # lowercased names (or "" for an unnamed stage)
    found: list[FoundImage] = []
    for command in commands:
        instruction = command.cmd.upper()
        line = int(command.start_line)
        if instruction not in INSTRUCTIONS:
            raise InputError(f"{file}: line {line}: unknown instruction {command.cmd}")
        if instruction == "ARG":
            target = global_args if not stages else stage_args
            for token in command.value:
                name, has_default, default = token.partition("=")
                if has_default:
                    scope = {**global_args, **stage_args}
                    target[name] = _expand(_unquote(default), scope, escape, file, line)
                elif stages and name in global_args:
                    stage_args[name] = global_args[name]  # ARG NAME re-imports a global
            continue
        if instruction == "FROM":
            found.extend(_from(command.value, global_args, stages, escape, file, line))
            stage_args = {}
            continue
        if not stages:
            continue
        for reference in _from_flags(instruction, command.flags):
            image = _expand(reference, {**global_args, **stage_args}, escape, file, line)
            if image.isdigit() or image.lower() in stages or image.lower() == "scratch":
                continue
            found.append(_found(image, file, line, stages))
    return found


def _from(
    value: tuple[str, ...],
    args: dict[str, str],
    stages: list[str],
    escape: str,
    file: str,
    line: int,
) -> Iterator[FoundImage]:
    if not value or not value[0]:
        raise InputError(f"{file}: line {line}: FROM names no image")
    alias = ""
    if len(value) == 3 and value[1].upper() == "AS":
        alias = value[2].lower()
    elif len(value) != 1:
        raise InputError(f"{file}: line {line}: FROM takes an image and an optional AS name")
    written = _unquote(value[0])
    image = _expand(written, args, escape, file, line)
    if not image:
        unset = substitute(written, args, dialect="dockerfile", escape=escape).unset
        why = f" (ARG {', '.join(unset)} has no default)" if unset else ""
        raise InputError(
            f"{file}: line {line}: FROM {written}: the base image is empty{why}; "
            "pass the image to regmon check as an argument instead"
        )
    is_stage = image.lower() in stages
    stages.append(alias)
    if is_stage or image.lower() == "scratch":
        return
    yield _found(image, file, line, stages)


def _found(image: str, file: str, line: int, stages: list[str]) -> FoundImage:
    stage = stages[-1] or str(len(stages) - 1)
    return FoundImage(image=image, file=file, line=line, kind="stage", name=stage)


def _from_flags(instruction: str, flags: tuple[str, ...]) -> Iterator[str]:
    for flag in flags:
        if instruction in ("COPY", "ADD") and flag.startswith("--from="):
            yield flag[len("--from=") :]
        elif instruction == "RUN" and flag.startswith("--mount="):
            options = dict(
                option.partition("=")[::2] for option in flag[len("--mount=") :].split(",")
            )
            if options.get("from"):
                yield options["from"]


def _expand(text: str, args: dict[str, str], escape: str, file: str, line: int) -> str:
    try:
        return substitute(text, args, dialect="dockerfile", escape=escape).value
    except SubstitutionError as exc:
        raise InputError(f"{file}: line {line}: {exc}") from None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _escape_character(text: str) -> str:
    """The ``# escape=`` parser directive, if the file starts with one (BuildKit reads
    directives only before the first comment, blank line or instruction)."""
    for raw in text.splitlines():
        line = raw.strip()
        match = _ESCAPE_DIRECTIVE.match(line)
        if match:
            return match.group(1)
        if not _DIRECTIVE.match(line):
            break
    return "\\"
