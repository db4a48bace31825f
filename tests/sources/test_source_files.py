"""``sources:`` in the config and the FileSource that reads them (no service, no registry).

The fixture deployment (tests/data/deploy) is copied beside a config file; what the
source yields is compared with what ``regmon check -f deploy`` reports for the same
files (tests/data/check-golden/check.txt): the same images, once each, in the same
order, with the same places.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.paths import DATA

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError, InputError
from monitor.sources.all import sources_for
from monitor.sources.base import ConfigSource, targets_of
from monitor.sources.deployment import FileSource, file_sources, read_sources


def golden_images() -> list[tuple[str, tuple[str, ...]]]:
    """(reference, places) of every line of the ``check -f deploy`` golden output."""
    rows = []
    for line in (DATA / "check-golden" / "check.txt").read_text().splitlines():
        _, reference, rest = line.split(maxsplit=2)
        places = rest.split("  ")[-1]
        rows.append((reference, tuple(places.split(", "))))
    return rows


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "deploy", tmp_path / "deploy")
    return tmp_path


def config_in(root: Path, text: str) -> Path:
    path = root / "regmon.yaml"
    path.write_text(f"database: sqlite:///{root}/regmon.db\n{text}")
    return path


def source_of(root: Path, text: str) -> FileSource:
    config = load_config(config_in(root, text))
    [_, source] = sources_for(config)
    assert isinstance(source, FileSource)
    return source


# --------------------------------------------------------------------------- config


def test_an_entry_names_itself_by_its_globs_and_they_resolve_beside_the_config(
    root: Path,
) -> None:
    config = load_config(
        config_in(
            root,
            "defaults: {interval: 5m}\n"
            "webhooks: [{name: ops, url: 'http://127.0.0.1:9/hook'}]\n"
            "sources:\n"
            "  - files: ['deploy/**/*.yaml', deploy/docker/Dockerfile]\n"
            "    interval: 10m\n    webhooks: [ops]\n    platforms: [linux/arm64]\n"
            "  - {name: base-images, files: [/srv/images/*/Dockerfile], cron: '0 6 * * *'}\n",
        )
    )
    first, second = config.sources
    assert first.name == "files:deploy/**/*.yaml,deploy/docker/Dockerfile"
    assert first.files == (f"{root}/deploy/**/*.yaml", f"{root}/deploy/docker/Dockerfile")
    assert (first.interval, first.webhooks, first.platforms) == (600.0, ("ops",), ("linux/arm64",))
    assert (second.name, second.files, second.cron) == (
        "base-images",
        ("/srv/images/*/Dockerfile",),
        "0 6 * * *",
    )


def test_a_long_default_name_is_shortened_with_a_hash_of_the_globs() -> None:
    globs = [f"deploy/team-{n}/**/*.yaml" for n in range(5)]
    [entry] = parse_config(f"sources:\n  - files: {globs}\n").sources
    assert len(entry.name) == 64
    assert entry.name.startswith("files:deploy/team-0/**/*.yaml,deploy/team-1/")
    [again] = parse_config(f"sources:\n  - files: {globs}\n").sources
    assert again.name == entry.name  # stable: the same entry, the same name


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{files: []}", "sources[0].files: expected at least one file name or glob"),
        ("{files: deploy}", "sources[0].files: expected a list"),
        ("{interval: 5m}", "sources[0].files: a value is required"),
        ("{files: ['  ']}", "sources[0].files[0]: expected a file name or glob"),
        ("{files: [a], image: nginx}", "sources[0].image: unknown key"),
        ("{files: [a], name: config}", "sources[0].name: 'config' names the watch: list"),
        ("{files: [a], name: 'two words'}", "sources[0].name: expected a name of up to 64"),
        ("{files: [a], interval: 5m, cron: '* * * * *'}", "interval and cron are mutually"),
        ("{files: [a], webhooks: [ops]}", "sources[0].webhooks[0]: unknown webhook 'ops'"),
        ("{files: [a], interval: soon}", "sources[0].interval: expected a duration"),
        ("{files: [a], missing_after: 0}", "sources[0].missing_after: expected a number >= 1"),
    ],
)
def test_a_bad_entry_is_refused_naming_its_key(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"sources:\n  - {entry}\n")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_two_entries_of_the_same_files_need_a_name() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("sources:\n  - files: [a, b]\n  - files: [a, b]\n    interval: 1m\n")
    assert str(caught.value) == (
        "<string>: sources[1].name: duplicate source name 'files:a,b' "
        "(also sources[0]; give one a name:)"
    )
    named = parse_config("sources:\n  - files: [a, b]\n  - {name: fast, files: [a, b]}\n")
    assert [entry.name for entry in named.sources] == ["files:a,b", "fast"]


# --------------------------------------------------------------------------- reading


def test_a_folder_yields_what_check_f_reports_once_each_with_every_place(root: Path) -> None:
    source = source_of(root, "sources:\n  - files: [deploy]\n    interval: 10m\n")
    assert source.targets() == ()  # nothing before the first read
    assert source.read() is True
    found = [(w.key, w.places) for w in source.targets()]
    assert found == golden_images()
    assert {(w.source, w.interval, w.cron, w.missing_after) for w in source.targets()} == {
        ("files:deploy", 600.0, None, 2)
    }


def test_double_star_spans_folders_and_each_entry_applies_its_defaults(root: Path) -> None:
    config = load_config(
        config_in(
            root,
            "defaults: {cron: '*/5 * * * *', missing_after: 4}\n"
            "webhooks: [{name: ops, url: 'http://127.0.0.1:9/hook'}, "
            "{name: dev, url: 'http://127.0.0.1:9/dev'}]\n"
            "sources:\n"
            "  - files: ['deploy/**/jobs.yaml']\n    webhooks: [dev]\n    failing_after: 9\n"
            "  - files: ['**/Dockerfile']\n    interval: 1h\n    jitter: 0%\n",
        )
    )
    sources = sources_for(config)
    assert read_sources(sources) == []
    jobs, docker = (source.targets() for source in sources[1:])
    assert [(w.key, w.places) for w in jobs] == [
        (
            "localhost:5000/tools/wait-for:1.2",
            ("deploy/k8s/jobs.yaml:17", "deploy/k8s/jobs.yaml:36"),
        ),
        ("localhost:5000/shop/report:2.1.0", ("deploy/k8s/jobs.yaml:21",)),
        ("localhost:5000/shop/migrate:2.1.0", ("deploy/k8s/jobs.yaml:39",)),
    ]
    assert {(w.cron, w.interval, w.webhooks, w.missing_after, w.failing_after) for w in jobs} == {
        ("*/5 * * * *", None, ("dev",), 4, 9)
    }
    assert [(w.key, w.places) for w in docker] == [
        ("localhost:5000/library/golang:1.22-alpine", ("deploy/docker/Dockerfile:6",)),
        ("localhost:5000/tools/busybox:1.36", ("deploy/docker/Dockerfile:9",)),
        ("localhost:5000/base/distroless-static:nonroot", ("deploy/docker/Dockerfile:21",)),
    ]
    assert {(w.cron, w.interval, w.jitter, w.webhooks) for w in docker} == {
        (None, 3600.0, 0.0, ("ops", "dev"))
    }


def test_the_watch_list_wins_over_a_source_for_the_same_image(root: Path) -> None:
    config = load_config(
        config_in(
            root,
            "watch:\n  - image: localhost:5000/shop/report:2.1.0\n    interval: 30s\n"
            "sources:\n  - files: [deploy/k8s/jobs.yaml]\n",
        )
    )
    sources = sources_for(config)
    read_sources(sources)
    targets = targets_of(sources)
    assert [(key, w.source, w.interval) for key, w in targets.items()] == [
        ("localhost:5000/shop/report:2.1.0", "config", 30.0),
        ("localhost:5000/tools/wait-for:1.2", "files:deploy/k8s/jobs.yaml", 300.0),
        ("localhost:5000/shop/migrate:2.1.0", "files:deploy/k8s/jobs.yaml", 300.0),
    ]


def test_a_change_is_seen_by_its_fingerprint_and_reread_leaves_the_old_source_as_it_was(
    root: Path,
) -> None:
    source = source_of(root, "sources:\n  - files: ['deploy/k8s/*.yaml']\n")
    source.read()
    before = [w.key for w in source.targets()]
    assert not source.stale(source.fingerprint())
    assert source.reread() is None  # unchanged files, unchanged watches

    # A new file matching the glob is found.
    (root / "deploy" / "k8s" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"
        "spec:\n  containers:\n    - {name: x, image: localhost:5000/extra/pod:1}\n"
    )
    assert source.stale(source.fingerprint())
    fresh = source.reread()
    assert fresh is not None and fresh.name == source.name
    # Files in name order: extra.yaml comes first.
    assert [w.key for w in fresh.targets()] == ["localhost:5000/extra/pod:1", *before]
    assert [w.key for w in source.targets()] == before  # the one in force is untouched
    assert fresh.targets()[0].places == ("deploy/k8s/extra.yaml:6",)

    # A file that goes away takes its images with it.
    (root / "deploy" / "k8s" / "jobs.yaml").unlink()
    fresh2 = fresh.reread()
    assert fresh2 is not None
    assert "localhost:5000/shop/report:2.1.0" not in [w.key for w in fresh2.targets()]


def test_a_broken_file_raises_once_per_change_and_the_source_keeps_its_last_good_read(
    root: Path,
) -> None:
    source = source_of(root, "sources:\n  - files: [deploy/k8s/jobs.yaml]\n")
    source.read()
    good = source.targets()
    jobs = root / "deploy" / "k8s" / "jobs.yaml"
    jobs.write_text(jobs.read_text().replace("  jobTemplate:", "  jobTemplate: [", 1))
    assert source.stale(source.fingerprint())
    with pytest.raises(InputError) as caught:
        source.reread()
    assert str(caught.value).startswith(f"source files:deploy/k8s/jobs.yaml: {jobs}: line "), (
        caught.value
    )
    assert "\n" not in str(caught.value)
    assert source.targets() is good
    assert not source.stale(source.fingerprint())  # looked at: not told again until it changes


def test_an_image_that_is_no_reference_names_its_place(root: Path) -> None:
    compose = root / "deploy" / "compose" / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: ${TAG:-}Bad:Ref\n")
    source = source_of(root, "sources:\n  - files: [deploy/compose/compose.yaml]\n")
    with pytest.raises(InputError) as caught:
        source.read()
    assert str(caught.value).startswith(
        f"source files:deploy/compose/compose.yaml: {compose}: line 3: "
    ), caught.value


def test_read_sources_raises_for_a_source_never_read_and_reports_one_with_a_good_read(
    root: Path,
) -> None:
    config = load_config(config_in(root, "sources:\n  - files: [deploy/k8s/jobs.yaml]\n"))
    [config_source, source] = sources_for(config)
    assert isinstance(config_source, ConfigSource)
    assert read_sources([config_source, source]) == []
    (root / "deploy" / "k8s" / "jobs.yaml").write_text("kind: [\n")
    # A config reload keeping the entry starts from the last good read, with its new keys.
    reloaded = load_config(
        config_in(root, "sources:\n  - files: [deploy/k8s/jobs.yaml]\n    interval: 1m\n")
    )
    [kept] = file_sources(reloaded, [source])
    [problem] = read_sources([kept])
    assert problem.startswith("source files:deploy/k8s/jobs.yaml: ")
    assert [w.key for w in kept.targets()] == [w.key for w in source.targets()]
    assert {w.interval for w in kept.targets()} == {60.0}
    # A new entry has no good read to keep.
    [new] = file_sources(reloaded)
    with pytest.raises(InputError):
        read_sources([new])


def test_a_glob_that_matches_nothing_yields_nothing_and_no_error(root: Path) -> None:
    source = source_of(root, "sources:\n  - files: ['nowhere/**/*.yaml']\n")
    assert source.read() is True
    assert (source.targets(), source.files) == ((), ())


def test_places_outside_the_config_folder_stay_absolute(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(root / "deploy" / "docker" / "Dockerfile", elsewhere / "Dockerfile")
    source = source_of(root, f"sources:\n  - files: [{elsewhere}/Dockerfile]\n")
    source.read()
    assert source.targets()[0].places == (f"{elsewhere}/Dockerfile:6",)


def test_only_the_files_that_changed_are_parsed_again(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.sources.files as files

    parsed: list[str] = []
    real = files.images_in_paths

    def counting(paths: list[str], environ: object) -> object:
        parsed.extend(os.path.relpath(path, root) for path in paths)
        return real(paths, environ)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "images_in_paths", counting)
    source = source_of(root, "sources:\n  - files: [deploy]\n")
    source.read()
    assert len(parsed) == len(set(parsed)) == 10  # every deployment file, once
    parsed.clear()
    jobs = root / "deploy" / "k8s" / "jobs.yaml"
    jobs.write_text(jobs.read_text().replace("migrate:2.1.0", "migrate:2.2.0"))
    fresh = source.reread()
    assert parsed == ["deploy/k8s/jobs.yaml"]
    assert fresh is not None
    assert "localhost:5000/shop/migrate:2.2.0" in [w.key for w in fresh.targets()]
    # A compose file is read again when the .env beside it changes.
    parsed.clear()
    dotenv = root / "deploy" / "compose" / ".env"
    dotenv.write_text(dotenv.read_text() + "UNUSED=1\n")
    assert fresh.reread() is None  # the same images: nothing to apply
    assert parsed == ["deploy/compose/compose.override.yml", "deploy/compose/compose.yaml"]
