"""``repository:`` watch entries with ``tags:``, and ``newer: semver`` (SPEC §9), at load."""

from __future__ import annotations

import pytest

from monitor.config import parse_config, resolve_repositories, resolve_watches
from monitor.errors import ConfigError
from monitor.reference import RepositoryName
from monitor.sources.all import sources_for
from monitor.sources.repository import RepositorySource

SPEC_EXAMPLE = r"""
defaults: {interval: 10m, jitter: 0%}
webhooks:
  - {name: ops, url: 'https://hooks.example/x'}
watch:
  - repository: ghcr.io/acme/api
    tags: {include: '^v\d+\.\d+\.\d+$', exclude: '-rc', semver: '>=2.0.0 <3', max: 50}
    interval: 1m
  - image: nginx:1.27.2
    newer: semver
  - repository: nginx
"""


def test_the_spec_example_loads_with_defaults_applied() -> None:
    config = parse_config(SPEC_EXAMPLE)
    [nginx] = resolve_watches(config)
    assert (nginx.key, nginx.newer, nginx.interval) == ("docker.io/library/nginx:1.27.2", True, 600)
    api, hub = resolve_repositories(config)
    assert api.repository == RepositoryName("ghcr.io", "acme/api")
    assert (api.key, api.interval, api.jitter, api.webhooks) == (
        "ghcr.io/acme/api",
        60,
        0,
        ("ops",),
    )
    selection = api.selection
    assert selection.include is not None and selection.include.pattern == r"^v\d+\.\d+\.\d+$"
    assert selection.exclude is not None and selection.exclude.pattern == "-rc"
    assert selection.semver is not None and selection.semver.text == ">=2.0.0 <3"
    assert selection.max == 50
    assert (hub.key, hub.selection.max, hub.interval) == ("docker.io/library/nginx", None, 600)
    # Its tags are tag watches with the entry's settings, from a source of its own.
    watch = api.tag_watch("v2.1.0", "repository:ghcr.io/acme/api")
    assert (watch.key, watch.interval, watch.webhooks, watch.newer) == (
        "ghcr.io/acme/api:v2.1.0",
        60,
        ("ops",),
        False,
    )
    names = [source.name for source in sources_for(config)]
    assert names == ["config", "repository:ghcr.io/acme/api", "repository:docker.io/library/nginx"]
    assert all(isinstance(s, RepositorySource) for s in sources_for(config)[1:])


ERRORS = [
    (
        "bad include regex",
        "watch:\n  - repository: r.io/a\n    tags: {include: '(['}\n",
        "watch[0].tags.include: not a regular expression: "
        "unterminated character set at position 1 in '(['",
    ),
    (
        "bad exclude regex",
        "watch:\n  - repository: r.io/a\n    tags: {exclude: 'a{2,1}'}\n",
        "watch[0].tags.exclude: not a regular expression: "
        "min repeat greater than max repeat at position 2 in 'a{2,1}'",
    ),
    (
        "bad range",
        "watch:\n  - repository: r.io/a\n    tags: {semver: '>=2.0.0 <3 junk'}\n",
        "watch[0].tags.semver: not a version range: Invalid comparator: junk "
        "(got '>=2.0.0 <3 junk')",
    ),
    (
        "empty range",
        "watch:\n  - repository: r.io/a\n    tags: {semver: ''}\n",
        "watch[0].tags.semver: an empty version range (use '*' for any version) (got '')",
    ),
    (
        "max zero",
        "watch:\n  - repository: r.io/a\n    tags: {max: 0}\n",
        "watch[0].tags.max: expected a number >= 1",
    ),
    (
        "unknown tags key",
        "watch:\n  - repository: r.io/a\n    tags: {incude: x}\n",
        "watch[0].tags.incude: unknown key",
    ),
    (
        "repository with a tag",
        "watch:\n  - repository: r.io/a:1\n",
        "watch[0].repository: invalid image reference 'r.io/a:1': "
        "a repository has no tag or digest (watch tags with image:)",
    ),
    (
        "image and repository",
        "watch:\n  - {image: r.io/a:1, repository: r.io/a}\n",
        "watch[0]: expected exactly one of image (a tag) or repository (its tags)",
    ),
    (
        "tags on an image",
        "watch:\n  - image: r.io/a:1\n    tags: {max: 2}\n",
        "watch[0]: tags: only for repository: entries (image: names one tag)",
    ),
    (
        "newer on a repository",
        "watch:\n  - repository: r.io/a\n    newer: semver\n",
        "watch[0]: newer: only for image: entries (a repository lists every version)",
    ),
    (
        "newer on a tag that is no version",
        "watch:\n  - image: r.io/a:latest\n    newer: semver\n",
        "watch[0]: newer: semver needs a tag that is a version like 1.27.2 or v2.1 (got 'latest')",
    ),
    (
        "newer other than semver",
        "watch:\n  - image: r.io/a:1.2\n    newer: calver\n",
        "watch[0].newer: expected 'semver' (got 'calver')",
    ),
    (
        "the same repository twice",
        "watch:\n  - repository: r.io/a\n  - repository: r.io/a\n",
        "watch[1].repository: r.io/a is already watched by watch[0]",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=name) for name, t, e in ERRORS]
)
def test_a_bad_entry_is_one_line_naming_the_key_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="regmon.yaml")
    assert str(caught.value) == f"regmon.yaml: {expected}"
