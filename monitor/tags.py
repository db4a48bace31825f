"""Tags as versions: parsing, ordering, ranges, artifact tags, selection (pure).

Image tags are semantic versions as people write them, not as semver.org
writes them: ``v1.2.3``, ``1.27`` (a floating minor), ``1.27.2-alpine`` (a
*flavor*, not a pre-release), ``2.0.0-rc.1`` (a pre-release), ``2024.10.01``.
A tag is read as ``[v]MAJOR[.MINOR[.PATCH]][-SUFFIX][+BUILD]``; the suffix is a
pre-release when its first identifier is a pre-release word (``rc``, ``beta``,
``alpha``, ``pre``, ``dev``, …, optionally with a number) or a number, and a
flavor otherwise. ``1.27.2-alpine`` is version 1.27.2 of flavor ``alpine``, so
a range ``>=1.27`` selects it, and a newer version of it is ``1.27.3-alpine``,
never ``1.27.3`` or ``1.28-alpine``.

Ranges are npm's (``>=2.0.0 <3``, ``^2``, ``~2.1``, ``1.x || >=3``, ``1.2 - 2``),
evaluated by ``node-semver`` (a maintained port of npm's own); as in npm, a
pre-release satisfies a range only when the range names a pre-release of the
same version (``>=2.0.0-0``).

Signature, attestation and SBOM tags that cosign and the OCI referrers
fallback write (``sha256-<hex>``, ``sha256-<hex>.sig``, ``.att``, ``.sbom``)
are never selected: they are artifacts about an image, not versions of it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SelectionChange",
    "TagSelection",
    "TagVersion",
    "VersionRange",
    "announced_versions",
    "diff_selection",
    "is_artifact_tag",
    "newer_versions",
    "parse_range",
    "parse_version",
    "select_tags",
]

_VERSION: Final = re.compile(
    r"^[vV]?(?P<numbers>\d{1,9}(?:\.\d{1,9}){0,2})"
    r"(?:-(?P<suffix>[0-9A-Za-z][0-9A-Za-z.-]*))?"
    r"(?:\+(?P<build>[0-9A-Za-z.-]+))?$"
)
_PRERELEASE_WORD: Final = re.compile(
    r"^(?:alpha|beta|rc|pre|preview|dev|snapshot|canary|nightly|next|a|b|m)\d*$", re.IGNORECASE
)
_ARTIFACT: Final = re.compile(r"^sha(?:256|384|512)-[0-9a-f]{32,128}(?:\.[A-Za-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class TagVersion:
    """A tag read as a version. Ordering: numbers, then release above its pre-releases."""

    tag: str
    numbers: tuple[int, ...]  # as written: 1, 2 or 3 of them
    prerelease: tuple[str, ...]  # () for a release
    flavor: str  # "" or the non-pre-release suffix ("alpine", "slim-bookworm")

    @property
    def precision(self) -> int:
        return len(self.numbers)

    @property
    def semver(self) -> str:
        """The strict semver string ranges are evaluated on (missing numbers are 0)."""
        major, minor, patch = (*self.numbers, 0, 0)[:3]
        identifiers = (str(int(i)) if i.isdigit() else i for i in self.prerelease)
        pre = f"-{'.'.join(identifiers)}" if self.prerelease else ""
        return f"{major}.{minor}.{patch}{pre}"

    def sort_key(self) -> tuple[Any, ...]:
        numbers = (*self.numbers, 0, 0)[:3]
        # semver §11: a release ranks above its pre-releases; numeric identifiers
        # compare as numbers and below alphanumeric ones.
        pre: tuple[Any, ...] = (
            (1,) if not self.prerelease else (0, *map(_identifier_key, self.prerelease))
        )
        return (numbers, pre, self.precision, self.tag)


def _identifier_key(identifier: str) -> tuple[int, int, str]:
    return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)


def parse_version(tag: str) -> TagVersion | None:
    """The version a tag names, or None (``latest``, ``stable-slim``, an artifact tag)."""
    match = _VERSION.match(tag)
    if match is None:
        return None
    numbers = tuple(int(part) for part in match["numbers"].split("."))
    suffix = match["suffix"] or ""
    identifiers = tuple(suffix.split(".")) if suffix else ()
    first = suffix.split("-")[0].split(".")[0] if suffix else ""
    if suffix and (first.isdigit() or _PRERELEASE_WORD.match(first)):
        return TagVersion(tag, numbers, identifiers, "")
    return TagVersion(tag, numbers, (), suffix)


def is_artifact_tag(tag: str) -> bool:
    """A cosign signature / attestation / SBOM tag, or an OCI referrers fallback tag."""
    return _ARTIFACT.match(tag) is not None


class VersionRange:
    """An npm-style range, validated when built (``parse_range``)."""

    __slots__ = ("_range", "text")

    def __init__(self, text: str, compiled: Any) -> None:
        self.text = text
        self._range = compiled

    def contains(self, version: TagVersion) -> bool:
        import nodesemver

        return bool(self._range.test(nodesemver.make_semver(version.semver, loose=False)))

    def __repr__(self) -> str:
        return f"VersionRange({self.text!r})"


def parse_range(text: str) -> VersionRange:
    """Compile ``text`` (``>=2.0.0 <3``, ``^2``, ``~2.1``); a ValueError names what is wrong."""
    import nodesemver

    stripped = " ".join(text.split())
    if not stripped:
        raise ValueError("an empty version range (use '*' for any version)")
    try:
        # strict: loose mode silently drops what it cannot read ('2.0.0 <3 junk')
        compiled = nodesemver.make_range(stripped, loose=False)
    except ValueError as exc:
        raise ValueError(f"not a version range: {exc}") from None
    if compiled is None:  # pragma: no cover - make_range returns None only for None input
        raise ValueError("not a version range")
    return VersionRange(stripped, compiled)


@dataclass(frozen=True, slots=True)
class TagSelection:
    """A repository watch's ``tags:`` (SPEC §9). Regexes are searched, not anchored."""

    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    semver: VersionRange | None = None
    max: int | None = None


def select_tags(tags: Iterable[str], selection: TagSelection) -> list[str]:
    """The tags a repository watch tracks, in ascending order.

    ``max`` keeps the N highest versions; tags that are not versions rank below
    every version and among themselves by name (the last N by name when no tag
    is a version).
    """
    chosen: list[tuple[tuple[Any, ...], str]] = []
    for tag in set(tags):
        if is_artifact_tag(tag):
            continue
        if selection.include is not None and selection.include.search(tag) is None:
            continue
        if selection.exclude is not None and selection.exclude.search(tag) is not None:
            continue
        version = parse_version(tag)
        if selection.semver is not None and (
            version is None or not selection.semver.contains(version)
        ):
            continue
        key = (1, version.sort_key()) if version is not None else (0, (tag,))
        chosen.append((key, tag))
    chosen.sort()
    if selection.max is not None:
        chosen = chosen[-selection.max :] if selection.max > 0 else []
    return [tag for _, tag in chosen]


@dataclass(frozen=True, slots=True)
class SelectionChange:
    """How one listing moves a repository watch's selection on (``diff_selection``)."""

    selected: tuple[str, ...]  # the new selection, ascending (select_tags)
    created: tuple[str, ...] = ()  # newly selected tags that were not listed before
    deleted: tuple[str, ...] = ()  # selected before, no longer listed
    dropped: tuple[str, ...] = ()  # selected before, still listed, no longer selected


def diff_selection(
    selected: Collection[str] | None,
    listed_before: Collection[str] | None,
    listed: Collection[str],
    selection: TagSelection,
) -> SelectionChange:
    """The new selection from a complete listing, and what came and went.

    ``selected`` is the selection before (None: the repository was never
    listed, the baseline: nothing is created or deleted); ``listed_before``
    the listing before (None: not known, say after a restart, when every newly
    selected tag counts as created). A tag that leaves the selection but is
    still listed (``max`` moved on, a selection changed) is dropped, not
    deleted; a tag that enters it but was listed before (``max`` moved back
    after a deletion) is selected, not created.
    """
    now = select_tags(listed, selection)
    if selected is None:
        return SelectionChange(tuple(now))
    before = set(selected)
    present = set(listed)
    known = set(listed_before) if listed_before is not None else set()
    return SelectionChange(
        selected=tuple(now),
        created=tuple(tag for tag in now if tag not in before and tag not in known),
        deleted=tuple(sorted(tag for tag in before if tag not in present)),
        dropped=tuple(sorted(tag for tag in before if tag in present and tag not in set(now))),
    )


def announced_versions(known: str | None, newer: Sequence[str]) -> list[str]:
    """Which of ``newer`` (``newer_versions``, lowest first) are news after ``known``, the
    highest seen before: those above it; when none was seen before, only the highest."""
    if not newer:
        return []
    floor = parse_version(known) if known is not None else None
    if floor is None:
        return [newer[-1]]
    key = floor.sort_key()[:2]
    return [
        tag
        for tag in newer
        if (version := parse_version(tag)) is not None and version.sort_key()[:2] > key
    ]


def newer_versions(current: str, tags: Sequence[str]) -> list[str]:
    """The tags that are higher versions of ``current``, lowest first.

    Only tags of the same flavor and precision count (``1.27.2-alpine`` →
    ``1.27.3-alpine``; ``1.27`` → ``1.28``); a release is followed by releases
    only, a pre-release by pre-releases and releases. Empty when ``current`` is
    not a version.
    """
    base = parse_version(current)
    if base is None:
        return []
    key = base.sort_key()
    found: list[tuple[tuple[Any, ...], str]] = []
    for tag in tags:
        version = parse_version(tag)
        if (
            version is None
            or is_artifact_tag(tag)
            or version.flavor != base.flavor
            or version.precision != base.precision
            or (version.prerelease and not base.prerelease)
        ):
            continue
        candidate = version.sort_key()
        if candidate[:2] > key[:2]:
            found.append((candidate, tag))
    found.sort()
    return [tag for _, tag in found]
