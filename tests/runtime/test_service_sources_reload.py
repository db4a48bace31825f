"""``sources:`` across starts and config reloads, in process: what a broken file does when
there is a last good read to keep and when there is none, and what an entry taken out of
the config leaves in the store. (Following file edits: tests/e2e/test_service_sources.py.)

The tests that run the service do so on SQLite and on PostgreSQL (``db_url``); the refused
start checks that no SQLite file was created, and the others touch no store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from support.cli import no_traceback, regmon

from monitor.config import load_config
from monitor.service import Service
from monitor.store.repository import active_watches

CONFIG_ONLY = "127.0.0.1:9/cfg/app:1"
POD = "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n{containers}"


def pod(name: str, *images: str) -> str:
    containers = "".join(
        f"    - {{name: c{n}, image: {image}}}\n" for n, image in enumerate(images)
    )
    return POD.format(name=name, containers=containers)


def write_config(root: Path, sources: str, db: str | None = None) -> Path:
    path = root / "regmon.yaml"
    path.write_text(
        f"database: {db or f'sqlite:///{root}/regmon.db'}\n"
        "defaults: {interval: 1h, jitter: 0%}\n"
        f"watch:\n  - image: {CONFIG_ONLY}\n{sources}"
    )
    return path


SOURCES = "sources:\n  - files: ['k8s/*.yaml']\n"


def stored(service: Service) -> list[tuple[str, str]]:
    return sorted((row.image, row.source) for row in active_watches(service.engine))


def keys(service: Service) -> list[tuple[str, str, float | None]]:
    return [(w.key, w.source, w.interval) for w in service.watches()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "a.yaml").write_text(
        pod("a", "127.0.0.1:9/k8s/a:1", "127.0.0.1:9/k8s/shared:1")
    )
    (tmp_path / "k8s" / "b.yaml").write_text(pod("b", "127.0.0.1:9/k8s/shared:1"))
    return tmp_path


def test_reloads_keep_a_broken_sources_last_good_read_and_refuse_a_new_broken_entry(
    root: Path, caplog: pytest.LogCaptureFixture, db_url: str
) -> None:
    config = write_config(root, SOURCES, db_url)
    source = "files:k8s/*.yaml"

    async def main() -> None:
        service = Service(load_config(config), config_path=str(config))
        await service.start(serve_http=False)
        try:
            assert keys(service) == [
                (CONFIG_ONLY, "config", 3600.0),
                ("127.0.0.1:9/k8s/a:1", source, 3600.0),
                ("127.0.0.1:9/k8s/shared:1", source, 3600.0),
            ]
            assert [w.places for w in service.watches()][1:] == [
                ("k8s/a.yaml:6",),
                ("k8s/a.yaml:7", "k8s/b.yaml:6"),
            ]
            assert await asyncio.to_thread(stored, service) == [
                (CONFIG_ONLY, "config"),
                ("127.0.0.1:9/k8s/a:1", source),
                ("127.0.0.1:9/k8s/shared:1", source),
            ]

            # The file breaks and the entry's keys change: the last good images, new keys.
            (root / "k8s" / "a.yaml").write_text("kind: [\n")
            write_config(root, SOURCES + "    interval: 10m\n", db_url)
            assert await service.reload() is True
            assert keys(service)[1:] == [
                ("127.0.0.1:9/k8s/a:1", source, 600.0),
                ("127.0.0.1:9/k8s/shared:1", source, 600.0),
            ]

            # The entry taken out: its watches are no longer stored as active.
            write_config(root, "", db_url)
            assert await service.reload() is True
            assert keys(service) == [(CONFIG_ONLY, "config", 3600.0)]
            assert await asyncio.to_thread(stored, service) == [(CONFIG_ONLY, "config")]

            # Put back while its file is broken: no good read to keep, the reload refused.
            write_config(root, SOURCES, db_url)
            assert await service.reload() is False
            assert keys(service) == [(CONFIG_ONLY, "config", 3600.0)]
            assert await asyncio.to_thread(stored, service) == [(CONFIG_ONLY, "config")]
        finally:
            await service.stop()

    with caplog.at_level(logging.INFO, logger="regmon"):
        asyncio.run(main())
    bad = root / "k8s" / "a.yaml"
    ours = [r for r in caplog.records if r.name.startswith("regmon")]
    messages = [r.getMessage() for r in ours if r.levelno >= logging.ERROR]
    why = (
        f"source {source}: {bad}: line 2, column 1: invalid YAML: while parsing a flow node; "
        "did not find expected node content"
    )
    # The file watcher may have looked too (at the broken file, at the rewritten config):
    # each message once per look, and no other.
    assert set(messages) == {
        f"{why}; keeping its last good watches",
        f"config reload refused, keeping the running config: {why}",
    }
    assert not any(r.exc_info for r in ours)


def test_a_source_that_does_not_read_at_start_refuses_the_start_in_one_line(root: Path) -> None:
    (root / "k8s" / "b.yaml").write_text(pod("b", "127.0.0.1:9/Bad:Ref"))
    config = write_config(root, SOURCES)
    proc = regmon("run", "--config", str(config))
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"regmon: source files:k8s/*.yaml: {root}/k8s/b.yaml: line 6: "
        "invalid image reference '127.0.0.1:9/Bad:Ref': repository name 'Bad' must be lowercase"
    )
    assert not (root / "regmon.db").exists()  # refused before the database was touched


def test_status_shows_a_broken_sources_watches_as_stored(root: Path, db_url: str) -> None:
    config = write_config(root, SOURCES, db_url)

    async def once() -> None:
        service = Service(load_config(config), config_path=str(config))
        await service.start(serve_http=False)
        await service.stop()

    asyncio.run(once())
    good = regmon("status", "--json", "--config", str(config))
    assert (good.returncode, good.stderr) == (0, "")
    images = json.loads(good.stdout)["images"]
    assert [(i["reference"], i["source"], i["places"]) for i in images] == [
        (CONFIG_ONLY, "config", []),
        ("127.0.0.1:9/k8s/a:1", "files:k8s/*.yaml", ["k8s/a.yaml:6"]),
        ("127.0.0.1:9/k8s/shared:1", "files:k8s/*.yaml", ["k8s/a.yaml:7", "k8s/b.yaml:6"]),
    ]
    (root / "k8s" / "a.yaml").write_text("kind: [\n")
    proc = regmon("status", "--config", str(config))
    no_traceback(proc)
    assert proc.returncode == 0
    assert proc.stderr == (
        f"warning: source files:k8s/*.yaml: {root}/k8s/a.yaml: line 2, column 1: invalid "
        "YAML: while parsing a flow node; did not find expected node content; "
        "its watches as stored\n"
    )
    lines = proc.stdout.splitlines()
    # As stored: the images, without places (the files that had them do not read).
    assert [line.split()[1] for line in lines] == [
        CONFIG_ONLY,
        "127.0.0.1:9/k8s/a:1",
        "127.0.0.1:9/k8s/shared:1",
    ]


def test_config_validate_reads_the_sources_files(root: Path) -> None:
    config = write_config(root, SOURCES)
    proc = regmon("config", "validate", str(config))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"{config}: ok (1 watches, 0 webhooks, 2 images in 1 sources)\n",
        "",
    )
    (root / "k8s" / "b.yaml").write_text("kind: [\n")
    proc = regmon("config", "validate", str(config))
    no_traceback(proc)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"regmon: source files:k8s/*.yaml: {root}/k8s/b.yaml: line 2, column 1: invalid "
        "YAML: while parsing a flow node; did not find expected node content\n"
    )


def test_a_change_the_store_refuses_is_applied_at_the_next_look(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from collections.abc import Mapping, Sequence

    from monitor.config import Watch
    from monitor.runtime.reloader import Reloader
    from monitor.runtime.targets import Targets
    from monitor.scheduler import WatchScheduler
    from monitor.sources.all import sources_for
    from monitor.sources.deployment import FileSource, read_sources
    from monitor.store.engine import StoreError

    config = load_config(write_config(root, SOURCES))
    sources = sources_for(config)
    read_sources(sources)
    writes: list[dict[str, list[str]]] = []

    async def store(by_source: Mapping[str, Sequence[Watch]]) -> None:
        writes.append({name: [w.key for w in ws] for name, ws in by_source.items()})
        if len(writes) == 1:
            raise StoreError("database is locked")

    async def check(key: str) -> None:
        return None

    async def main() -> tuple[list[bool], Targets]:
        scheduler = WatchScheduler(check)
        targets = Targets(sources, scheduler=scheduler, sync=store, on_change=lambda _w: None)
        scheduler.commit(scheduler.plan(list(targets.watches.values())))
        reloader = Reloader(
            str(config),
            current=lambda: config,
            scheduler=scheduler,
            make_client=lambda _c: None,  # type: ignore[arg-type,return-value]
            sync_watches=store,
            commit=lambda _c, _w, _client: None,
            targets=targets,
        )
        (root / "k8s" / "b.yaml").write_text(pod("b", "127.0.0.1:9/k8s/new:1"))
        [_, source] = targets.sources()
        assert isinstance(source, FileSource)
        first = await reloader.follow(source)
        second = await reloader.follow(source)  # the same files: looked at again all the same
        return [first, second], targets

    with caplog.at_level(logging.INFO, logger="regmon"):
        followed, targets = asyncio.run(main())
    assert followed == [False, True]
    expected = ["127.0.0.1:9/k8s/a:1", "127.0.0.1:9/k8s/shared:1", "127.0.0.1:9/k8s/new:1"]
    assert writes == [{"files:k8s/*.yaml": expected}] * 2
    assert list(targets.watches) == [CONFIG_ONLY, *expected]
    assert [r.getMessage() for r in caplog.records if r.name == "regmon"] == [
        "source files:k8s/*.yaml: its files changed but the watches did not: database is locked",
        "source files:k8s/*.yaml reloaded: 3 watches (1 added, 0 removed)",
    ]
