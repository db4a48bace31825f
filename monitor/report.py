"""What ``regmon check`` prints: the references to check (from the arguments and the
deployment files, each once, with every place it was found) and the four output
formats (text, json, github, junit) over the results. Exit codes are the same for
every format (SPEC §3)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from monitor.domain import CheckResult, Status
from monitor.sources.found import Checked, FoundImage, gather

__all__ = [
    "EXIT_ERROR",
    "EXIT_MISSING",
    "EXIT_OK",
    "FORMATS",
    "NOT_PINNED",
    "Checked",
    "exit_code",
    "gather",
    "github_escape_data",
    "github_escape_property",
    "render",
    "result_json",
]

EXIT_OK, EXIT_MISSING, EXIT_ERROR = 0, 1, 3
FORMATS = ("text", "json", "github", "junit")
NOT_PINNED = "not pinned"


def violation(result: CheckResult, require_digest: bool) -> str | None:
    """``not pinned`` for a reference without a digest under ``--require-digest``."""
    if require_digest and result.reference.digest is None:
        return NOT_PINNED
    return None


def exit_code(results: Sequence[CheckResult], require_digest: bool = False) -> int:
    """SPEC §3: 3 if any error, else 1 if any missing/denied (or not pinned when a digest
    is required), else 0."""
    statuses = {r.status for r in results}
    if Status.ERROR in statuses:
        return EXIT_ERROR
    if statuses & {Status.MISSING, Status.DENIED}:
        return EXIT_MISSING
    if any(violation(r, require_digest) for r in results):
        return EXIT_MISSING
    return EXIT_OK


def result_json(result: CheckResult) -> dict[str, Any]:
    reason: str | None
    if result.status is Status.ERROR:
        reason = str(result.reason)
    elif result.status is Status.PRESENT:
        reason = None
    else:
        reason = result.detail
    return {
        "reference": str(result.reference),
        "status": str(result.status),
        "digest": result.digest,
        "media_type": result.media_type,
        "platforms": dict(result.platforms),
        "reason": reason,
        "http_status": result.http_status,
        "duration_ms": round(result.duration_ms, 1),
        "detail": result.detail if result.status is Status.ERROR else None,
    }


def _place_json(place: FoundImage) -> dict[str, Any]:
    return {
        "file": place.file,
        "line": place.line,
        "object": place.object,
        "container": place.container,
    }


def render(
    output_format: str,
    items: Sequence[Checked],
    results: Sequence[CheckResult],
    *,
    require_digest: bool = False,
) -> tuple[str, list[str]]:
    """The standard output (ends with a newline unless empty) and the standard-error
    lines (one per ``error`` result, with its detail) for ``results`` of ``items``."""
    pairs = list(zip(items, results, strict=True))
    errors = [
        f"regmon: {result.reference}: {result.detail}"
        for _, result in pairs
        if result.status is Status.ERROR and result.detail
    ]
    if output_format == "json":
        out = [json.dumps(_check_json(item, result, require_digest)) for item, result in pairs]
    elif output_format == "github":
        out = [line for item, result in pairs for line in _text_lines(item, result, require_digest)]
        out += [
            line for item, result in pairs for line in _annotations(item, result, require_digest)
        ]
    elif output_format == "junit":
        return _junit(pairs, require_digest), errors
    else:
        out = [line for item, result in pairs for line in _text_lines(item, result, require_digest)]
    return "".join(line + "\n" for line in out), errors


def _check_json(item: Checked, result: CheckResult, require_digest: bool) -> dict[str, Any]:
    doc = result_json(result)
    doc["pinned"] = result.reference.digest is not None
    doc["violation"] = violation(result, require_digest)
    doc["places"] = [_place_json(place) for place in item.places]
    return doc


def _text_lines(item: Checked, result: CheckResult, require_digest: bool) -> list[str]:
    line = f"{result.status!s:<7}  {result.reference}  {result.summary}"
    broken = violation(result, require_digest)
    if broken:
        line += f"  {broken}"
    if item.places:
        line += "  " + ", ".join(place.where for place in item.places)
    lines = [line]
    if result.status is Status.PRESENT and result.platforms:
        lines += [
            f"{'':<7}    {platform}  {digest}" for platform, digest in result.platforms.items()
        ]
    return lines


def _failure(result: CheckResult, require_digest: bool) -> tuple[str, str, str] | None:
    """(JUnit element, short type, message) when ``result`` fails the gate."""
    ref = result.reference
    if result.status is Status.ERROR:
        detail = f" ({result.detail})" if result.detail else ""
        return "error", str(result.reason), f"{ref} could not be checked: {result.reason}{detail}"
    if result.status in (Status.MISSING, Status.DENIED):
        return "failure", str(result.status), f"{ref} is {result.status}: {result.summary}"
    if violation(result, require_digest):
        return (
            "failure",
            NOT_PINNED,
            f"{ref} is not pinned by digest; pin it as {ref}@{result.digest}",
        )
    return None


def github_escape_data(text: str) -> str:
    """GitHub's workflow-command escaping for the message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_escape_property(text: str) -> str:
    """… and for a property value, also ``:`` and ``,``."""
    return github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


_TITLES = {"error": "image not checked", "missing": "image missing", "denied": "image denied",
           NOT_PINNED: "image not pinned"}  # fmt: skip


def _annotations(item: Checked, result: CheckResult, require_digest: bool) -> list[str]:
    failed = _failure(result, require_digest)
    if failed is None:
        return []
    _, kind, message = failed
    title = _TITLES.get(kind, _TITLES["error"])
    places: Sequence[FoundImage | None] = item.places or (None,)
    lines = []
    for place in places:
        props = []
        text = message
        if place is not None:
            if place.file != "<stdin>":
                props += [f"file={github_escape_property(place.file)}", f"line={place.line}"]
            text = f"{message} — {place.describe()} ({place.where})"
        props.append(f"title={github_escape_property(title)}")
        lines.append(f"::error {','.join(props)}::{github_escape_data(text)}")
    return lines


def _junit(pairs: Sequence[tuple[Checked, CheckResult]], require_digest: bool) -> str:
    import xml.etree.ElementTree as ET

    failures = errors = 0
    total_ms = sum(result.duration_ms for _, result in pairs)
    root = ET.Element("testsuites", name="regmon check")
    suite = ET.SubElement(root, "testsuite", name="regmon check")
    for item, result in pairs:
        first = item.places[0] if item.places else None
        case = ET.SubElement(
            suite,
            "testcase",
            name=str(result.reference),
            classname=first.file if first else "regmon.check",
            time=f"{result.duration_ms / 1000:.3f}",
        )
        if first is not None:
            case.set("file", first.file)
            case.set("line", str(first.line))
        found = "".join(f"{p.where} {p.describe()}\n" for p in item.places)
        failed = _failure(result, require_digest)
        if failed is not None:
            element, kind, message = failed
            failures += element == "failure"
            errors += element == "error"
            node = ET.SubElement(case, element, type=kind, message=message)
            node.text = message + "\n" + found
        outcome = f"{result.status} {result.summary}\n"
        ET.SubElement(case, "system-out").text = outcome + found
    for parent in (root, suite):
        parent.set("tests", str(len(pairs)))
        parent.set("failures", str(failures))
        parent.set("errors", str(errors))
        parent.set("time", f"{total_ms / 1000:.3f}")
    suite.set("skipped", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
