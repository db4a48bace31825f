"""Tags as versions: tables of real-world tags (pure)."""

from __future__ import annotations

import re

import pytest

from monitor.tags import (
    SelectionChange,
    TagSelection,
    diff_selection,
    is_artifact_tag,
    newer_versions,
    parse_range,
    parse_version,
    select_tags,
)


@pytest.mark.parametrize(
    ("tag", "numbers", "prerelease", "flavor", "semver"),
    [
        ("1.27.2", (1, 27, 2), (), "", "1.27.2"),
        ("v1.2.3", (1, 2, 3), (), "", "1.2.3"),
        ("V10", (10,), (), "", "10.0.0"),
        ("1.2", (1, 2), (), "", "1.2.0"),
        ("1.27.2-alpine", (1, 27, 2), (), "alpine", "1.27.2"),
        ("3.12.1-slim-bookworm", (3, 12, 1), (), "slim-bookworm", "3.12.1"),
        ("1.27-alpine3.20", (1, 27), (), "alpine3.20", "1.27.0"),
        ("v2.0.0-rc.1", (2, 0, 0), ("rc", "1"), "", "2.0.0-rc.1"),
        ("1.2.3-rc.01", (1, 2, 3), ("rc", "01"), "", "1.2.3-rc.1"),
        ("1.0.0-beta2", (1, 0, 0), ("beta2",), "", "1.0.0-beta2"),
        ("2.4.1-1", (2, 4, 1), ("1",), "", "2.4.1-1"),
        ("1.2.3+build.5", (1, 2, 3), (), "", "1.2.3"),
        ("2024.10.01", (2024, 10, 1), (), "", "2024.10.1"),
    ],
)
def test_versions_as_people_write_them(
    tag: str, numbers: tuple[int, ...], prerelease: tuple[str, ...], flavor: str, semver: str
) -> None:
    version = parse_version(tag)
    assert version is not None
    assert (version.numbers, version.prerelease, version.flavor, version.semver) == (
        numbers,
        prerelease,
        flavor,
        semver,
    )


@pytest.mark.parametrize(
    "tag",
    ["latest", "stable-slim", "alpine", "main", "1.2.3.4", "v", "sha256-" + "a" * 64 + ".sig", ""],
)
def test_not_versions(tag: str) -> None:
    assert parse_version(tag) is None


def test_ordering_is_numeric_and_releases_rank_above_their_prereleases() -> None:
    tags = ["v1.10.0", "v1.9.0", "v1.2.0", "v2.0.0-rc.1", "v2.0.0", "v2.0.0-beta.2", "v2.0.0-rc.10"]
    ordered = sorted(tags, key=lambda t: parse_version(t).sort_key())  # type: ignore[union-attr]
    assert ordered == [
        "v1.2.0",
        "v1.9.0",
        "v1.10.0",
        "v2.0.0-beta.2",
        "v2.0.0-rc.1",
        "v2.0.0-rc.10",
        "v2.0.0",
    ]


@pytest.mark.parametrize(
    "tag",
    [
        "sha256-" + "0123456789abcdef" * 4,
        "sha256-" + "0123456789abcdef" * 4 + ".sig",
        "sha256-" + "0123456789abcdef" * 4 + ".att",
        "sha256-" + "0123456789abcdef" * 4 + ".sbom",
    ],
)
def test_artifact_tags(tag: str) -> None:
    assert is_artifact_tag(tag)
    assert select_tags([tag, "1.0.0"], TagSelection()) == ["1.0.0"]


@pytest.mark.parametrize(
    ("expression", "inside", "outside"),
    [
        (">=2.0.0 <3", ["2.0.0", "v2.10.1", "2.1-alpine"], ["1.9.9", "3.0.0", "2.1.0-rc.1"]),
        ("^2", ["2.0.0", "2.99.0"], ["3.0.0", "1.0.0"]),
        ("~2.1", ["2.1.0", "2.1.9"], ["2.2.0", "2.0.9"]),
        (">=2.0.0-0 <3", ["2.0.0-rc.1", "2.0.0", "2.1.0"], ["2.1.0-rc.1", "3.0.0-rc.1"]),
        ("^v2", ["2.0.0"], ["3.0.0"]),
        ("1.x || >=3 <4", ["1.5.0", "3.2.1"], ["2.0.0", "4.0.0"]),
        ("1.2 - 2", ["1.2.0", "2.9.9"], ["1.1.9", "3.0.0"]),
    ],
)
def test_ranges(expression: str, inside: list[str], outside: list[str]) -> None:
    version_range = parse_range(expression)
    for tag in inside:
        assert version_range.contains(parse_version(tag)), tag  # type: ignore[arg-type]
    for tag in outside:
        assert not version_range.contains(parse_version(tag)), tag  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (">=2.0.0 <", "not a version range: Invalid comparator: <"),
        ("2.0.0 <3 junk", "not a version range: Invalid comparator: junk"),
        ("   ", "an empty version range (use '*' for any version)"),
    ],
)
def test_bad_ranges(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_range(expression)


REPOSITORY = [
    "latest",
    "stable-slim",
    "1.9.0",
    "1.10.0",
    "2.0.0-rc.1",
    "2.0.0",
    "2.1.0",
    "2.1.0-alpine",
    "v2.2.0",
    "3.0.0",
    "sha256-" + "ab" * 32 + ".sig",
]


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (
            TagSelection(),
            [
                "latest",
                "stable-slim",
                "1.9.0",
                "1.10.0",
                "2.0.0-rc.1",
                "2.0.0",
                "2.1.0",
                "2.1.0-alpine",
                "v2.2.0",
                "3.0.0",
            ],
        ),
        (
            TagSelection(semver=parse_range(">=2.0.0 <3")),
            ["2.0.0", "2.1.0", "2.1.0-alpine", "v2.2.0"],
        ),
        (TagSelection(include=re.compile(r"^\d+\.\d+\.\d+$"), max=2), ["2.1.0", "3.0.0"]),
        (
            TagSelection(include=re.compile(r"^\d"), exclude=re.compile(r"-(rc|alpine)")),
            ["1.9.0", "1.10.0", "2.0.0", "2.1.0", "3.0.0"],
        ),
        (TagSelection(include=re.compile("^(latest|stable-slim)$"), max=1), ["stable-slim"]),
        (TagSelection(max=3), ["2.1.0-alpine", "v2.2.0", "3.0.0"]),
        (TagSelection(max=0), []),
    ],
)
def test_selection(selection: TagSelection, selected: list[str]) -> None:
    assert select_tags(REPOSITORY, selection) == selected


@pytest.mark.parametrize(
    ("current", "newer"),
    [
        ("1.27.2", ["1.27.3", "1.28.0", "2.0.0"]),
        ("1.27.2-alpine", ["1.27.3-alpine", "1.28.0-alpine"]),
        ("1.27", ["1.28"]),
        ("v1.27.2", ["1.27.3", "1.28.0", "2.0.0"]),
        ("2.0.0-rc.1", ["2.0.0-rc.2", "2.0.0"]),
        ("latest", []),
        ("2.0.0", []),
    ],
)
def test_newer_versions(current: str, newer: list[str]) -> None:
    tags = [
        "1.27.1",
        "1.27.2",
        "1.27.3",
        "1.28.0",
        "2.0.0-rc.2",
        "2.0.0",
        "1.27.2-alpine",
        "1.27.3-alpine",
        "1.28.0-alpine",
        "1.28.0-slim",
        "1.27",
        "1.28",
        "latest",
        "sha256-" + "cd" * 32 + ".att",
    ]
    if current == "2.0.0-rc.1":
        tags = ["2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "2.0.0-beta.1"]
    assert newer_versions(current, tags) == newer


MAX2 = TagSelection(max=2)


@pytest.mark.parametrize(
    ("selected", "listed_before", "listed", "selection", "change"),
    [
        pytest.param(
            None, None, ["1.0", "1.1", "1.2"], MAX2, SelectionChange(("1.1", "1.2")), id="baseline"
        ),
        pytest.param(
            ["1.1", "1.2"],
            ["1.0", "1.1", "1.2"],
            ["1.0", "1.1", "1.2", "1.3"],
            MAX2,
            SelectionChange(("1.2", "1.3"), created=("1.3",), dropped=("1.1",)),
            id="max moves on: created, dropped (not deleted)",
        ),
        pytest.param(
            ["1.2", "1.3"],
            ["1.0", "1.1", "1.2", "1.3"],
            ["1.0", "1.1", "1.2"],
            MAX2,
            SelectionChange(("1.1", "1.2"), deleted=("1.3",)),
            id="deleted; the tag max takes back in was listed before: not created",
        ),
        pytest.param(
            ["1.1", "1.2"],
            None,
            ["1.1", "1.2", "1.3", "sha256-" + "a" * 64 + ".sig"],
            MAX2,
            SelectionChange(("1.2", "1.3"), created=("1.3",), dropped=("1.1",)),
            id="after a restart (listing before unknown); signatures never selected",
        ),
        pytest.param(
            ["a", "b"],
            ["a", "b"],
            [],
            TagSelection(),
            SelectionChange((), deleted=("a", "b")),
            id="every tag deleted",
        ),
    ],
)
def test_diff_selection(
    selected: list[str] | None,
    listed_before: list[str] | None,
    listed: list[str],
    selection: TagSelection,
    change: SelectionChange,
) -> None:
    assert diff_selection(selected, listed_before, listed, selection) == change
