"""Repository watches in the service against the real registry (SPEC §9, issue 11).

Tags come and go between listings: exactly one ``tag.created`` / ``tag.deleted``
each, written with the tag's state; a listing that fails deletes nothing;
``max`` moving on unwatches without ``tag.deleted``; signature tags are never
selected; a reload that keeps the repository and a restart keep its tags. Every test
runs on SQLite and on PostgreSQL (``db_url``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.faults import CountingProxy, RecordedRequest, Reply
from support.images import ImagePusher
from support.paging import PagingProxy
from support.registry import RegistryServer
from support.service import run_cli

from monitor.config import load_config
from monitor.domain import Status
from monitor.service import Service
from monitor.store.repository import active_watches, history_for, list_events

SIG = "sha256-" + "ab" * 32 + ".sig"


def write(path: Path, host: str, repo: str, extra: str = "", *, db: str) -> Path:
    path.write_text(
        f"database: {db}\n"
        f"docker_config: {path.parent / 'no-docker-config.json'}\n"
        "defaults: {interval: 1h, jitter: 0%, missing_after: 1}\n"
        f"watch:\n  - repository: {host}/{repo}\n{extra}"
    )
    return path


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.02)
    return value


async def first_listing(service: Service, key: str) -> None:
    """Wait for the listing the scheduler starts with (jitter 0%: at once), so that it
    cannot land inside a test's request count on a loaded machine."""
    await until(lambda: any(r.key == key and r.listed_at for r in service.repositories()))


def events(service: Service) -> list[tuple[str, str, str | None]]:
    return [
        (e["type"], e["image"]["tag"], e["current"]["digest"]) for e in list_events(service.engine)
    ]


def tagged(service: Service, repository: str) -> list[str]:
    [shown] = [r for r in service.repositories() if r.key == repository]
    return [key.rpartition(":")[2] for key in shown.tags]


async def checked(service: Service, repository: str) -> None:
    """Every selected tag has been checked once (the baseline), and it is written."""
    [shown] = [r for r in service.repositories() if r.key == repository]
    await until(lambda: all(service.states().get(k) is not None for k in shown.tags))
    await service.flush()


def run(config: Path, body: Callable[[Service], Awaitable[None]]) -> None:
    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        try:
            await body(service)
        finally:
            await service.stop()

    asyncio.run(main())


def test_tags_pushed_and_deleted_between_listings_are_one_created_and_one_deleted_each(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo()
    key = f"{registry.host}/{repo}"
    pushed = {tag: pusher.push_image(repo, tag).digest for tag in ("1.0.0", "1.1.0", "latest", SIG)}
    config = write(tmp_path / "regmon.yaml", registry.host, repo, db=db_url)

    async def body(service: Service) -> None:
        shown = await service.list_repository(key)
        assert (shown.status, shown.listed) == (Status.PRESENT, 4)
        assert tagged(service, key) == ["latest", "1.0.0", "1.1.0"]  # versions above names
        await checked(service, key)
        assert events(service) == []  # the first listing is the baseline
        pushed["1.2.0"] = (await asyncio.to_thread(pusher.push_image, repo, "1.2.0")).digest
        await asyncio.to_thread(pusher.delete_tag, repo, "1.0.0")
        await service.list_repository(key)
        await service.list_repository(key)  # nothing new: nothing more
        await service.flush()
        assert tagged(service, key) == ["latest", "1.1.0", "1.2.0"]
        metrics = service.metrics_registry
        assert metrics.get_sample_value("regmon_repository_tags", {"repository": key}) == 3
        assert metrics.get_sample_value("regmon_watched_images") == 3

    run(config, body)

    async def after(service: Service) -> None:
        await service.flush()
        assert events(service) == [
            ("tag.deleted", "1.0.0", None),
            ("tag.created", "1.2.0", pushed["1.2.0"]),
        ]
        watches = {row.image: row.source for row in active_watches(service.engine)}
        assert watches == {f"{key}:{t}": f"repository:{key}" for t in ("latest", "1.1.0", "1.2.0")}
        # The deleted tag's history is kept: present, then missing.
        assert [h.status for h in history_for(service.engine, f"{key}:1.0.0")] == [
            "present",
            "missing",
        ]
        # A restart starts from the stored selection: listing again changes nothing.
        await service.list_repository(key)
        await service.flush()
        assert len(events(service)) == 2
        assert tagged(service, key) == ["latest", "1.1.0", "1.2.0"]

    run(config, after)
    done = run_cli("status", "--config", str(config))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        *(f"present  {key}:{tag}  {pushed[tag]}" for tag in ("latest", "1.1.0", "1.2.0")),
        f"repository  {key}  3 tags",
    ]


def test_max_moving_on_unwatches_without_deleted_and_a_reload_keeps_the_tags(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo()
    key = f"{registry.host}/{repo}"
    for tag in ("1.0.0", "1.1.0", "1.2.0"):
        pusher.push_image(repo, tag)
    config = write(tmp_path / "regmon.yaml", registry.host, repo, "    tags: {max: 2}\n", db=db_url)

    async def body(service: Service) -> None:
        await service.list_repository(key)
        assert tagged(service, key) == ["1.1.0", "1.2.0"]
        await checked(service, key)
        await asyncio.to_thread(pusher.push_image, repo, "1.3.0")
        await service.list_repository(key)
        assert tagged(service, key) == ["1.2.0", "1.3.0"]  # 1.1.0 still listed: not deleted
        await service.flush()
        assert [(kind, tag) for kind, tag, _ in events(service)] == [("tag.created", "1.3.0")]

        # A reload that keeps the repository keeps its tags (and reschedules them).
        write(config, registry.host, repo, "    tags: {max: 2}\n    interval: 2h\n", db=db_url)
        assert await service.reload() is True
        assert tagged(service, key) == ["1.2.0", "1.3.0"]
        assert [(w.key, w.interval) for w in service.watches()] == [
            (f"{key}:1.2.0", 7200),
            (f"{key}:1.3.0", 7200),
        ]
        # A new selection applies at the next listing: 1.1.0 was listed all along (not
        # created), 1.3.0 is excluded (not deleted).
        write(config, registry.host, repo, "    tags: {max: 2, exclude: '^1\\.3'}\n", db=db_url)
        assert await service.reload() is True
        await service.list_repository(key)
        assert tagged(service, key) == ["1.1.0", "1.2.0"]
        await service.flush()
        assert len(events(service)) == 1
        # A reload without the repository retires its watches (their history is kept).
        config.write_text(config.read_text().split("watch:")[0] + "watch: []\n")
        assert await service.reload() is True
        assert service.watches() == [] and service.repositories() == []
        rows = await asyncio.to_thread(active_watches, service.engine)
        assert rows == []
        assert await asyncio.to_thread(history_for, service.engine, f"{key}:1.3.0") != []

    run(config, body)


def test_a_listing_that_fails_mid_pagination_deletes_nothing(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo()
    tags = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    for tag in tags:
        pusher.push_image(repo, tag)
    with PagingProxy(registry.host, page_size=2) as proxy:
        key = f"{proxy.host}/{repo}"
        config = write(tmp_path / "regmon.yaml", proxy.host, repo, db=db_url)

        async def body(service: Service) -> None:
            await first_listing(service, key)
            shown = await service.list_repository(key)
            assert (shown.status, tagged(service, key)) == (Status.PRESENT, tags)
            await checked(service, key)
            proxy.reset()
            proxy.fail_on_page = 2
            shown = await service.list_repository(key)
            assert (shown.status, str(shown.reason)) == (Status.ERROR, "server_error")
            assert proxy.count("GET", f"/v2/{repo}/tags/list") == 2
            assert tagged(service, key) == tags
            await service.flush()
            assert events(service) == []
            rows = await asyncio.to_thread(active_watches, service.engine)
            assert sorted(row.image for row in rows) == [f"{key}:{t}" for t in tags]

        run(config, body)


TAG_COUNT = 260
MANY = [f"1.{n}.0" for n in range(TAG_COUNT)]


@pytest.fixture(scope="module")
def many_tags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, str]]:
    """A registry of its own with one repository of 260 tags (one manifest, many tags)."""
    with RegistryServer(tmp_path_factory.mktemp("registry-many"), "noauth") as server:
        with ImagePusher(server.url) as pusher:
            image = pusher.push_image("team/many", MANY[0], seed="many")
            for tag in [*MANY[1:], SIG, "latest"]:
                pusher.push_raw_manifest("team/many", tag, image.body, image.media_type)
        yield server, "team/many"


@pytest.mark.parametrize("paged", [True, False], ids=["paged-100", "unpaged"])
def test_a_repository_of_more_tags_than_a_page(
    many_tags: tuple[RegistryServer, str], tmp_path: Path, paged: bool, db_url: str
) -> None:
    server, repo = many_tags
    with PagingProxy(server.host, page_size=100 if paged else 10_000) as proxy:
        key = f"{proxy.host}/{repo}"
        selection = "    tags: {semver: '>=1.200.0 <2', exclude: '5', max: 40}\n"
        config = write(tmp_path / "regmon.yaml", proxy.host, repo, selection, db=db_url)

        async def body(service: Service) -> None:
            await first_listing(service, key)
            proxy.reset()
            shown = await service.list_repository(key)
            assert (shown.status, shown.listed) == (Status.PRESENT, TAG_COUNT + 2)
            assert proxy.count("GET", f"/v2/{repo}/tags/list") == (3 if paged else 1)
            wanted = [t for t in MANY if int(t.split(".")[1]) >= 200 and "5" not in t][-40:]
            assert tagged(service, key) == wanted
            assert len(wanted) == 40 and wanted[0] == "1.206.0" and wanted[-1] == "1.249.0"

        run(config, body)


def test_token_auth_anonymous_lists_a_public_repository_and_is_denied_a_private_one(
    registry_token: RegistryServer,
    token_pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    public, private = unique_repo("public"), unique_repo("private")
    token_pusher.push_image(public, "v1.0.0")
    token_pusher.push_image(private, "v1.0.0")
    config = write(tmp_path / "regmon.yaml", registry_token.host, public, db=db_url)
    config.write_text(config.read_text() + f"  - repository: {registry_token.host}/{private}\n")

    async def body(service: Service) -> None:
        shown = await service.list_repository(f"{registry_token.host}/{public}")
        assert (shown.status, shown.tags) == (
            Status.PRESENT,
            (f"{registry_token.host}/{public}:v1.0.0",),
        )
        denied = await service.list_repository(f"{registry_token.host}/{private}")
        assert (denied.status, denied.detail, denied.tags) == (
            Status.DENIED,
            "insufficient_scope",
            (),
        )

    run(config, body)


def test_newer_semver_is_one_version_available_per_new_version(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo()
    for tag in ("1.27.2", "1.27.3", "1.27.3-alpine", "1.28", "latest"):
        pusher.push_image(repo, tag)
    image = f"{registry.host}/{repo}:1.27.2"
    config = tmp_path / "regmon.yaml"
    config.write_text(
        f"database: {db_url}\n"
        f"docker_config: {tmp_path / 'none.json'}\n"
        "defaults: {interval: 1h, jitter: 0%}\n"
        f"watch:\n  - image: {image}\n    newer: semver\n"
    )

    def available(service: Service) -> list[str]:
        return [
            e["version"]["available"]
            for e in list_events(service.engine)
            if e["type"] == "version.available"
        ]

    async def body(service: Service) -> None:
        state = await service.check_now(image)
        assert state.newer_version == "1.27.3"  # same flavor and precision only
        assert available(service) == ["1.27.3"]
        await service.check_now(image)
        assert available(service) == ["1.27.3"]  # not on every check
        for tag in ("1.27.4", "1.27.5", "2.0.0-rc.1", "1.27.5-alpine"):
            await asyncio.to_thread(pusher.push_image, repo, tag)
        await service.check_now(image)
        await service.check_now(image)
        assert available(service) == ["1.27.3", "1.27.4", "1.27.5"]
        event = [e for e in list_events(service.engine) if e["type"] == "version.available"][-1]
        assert event["version"] == {"current": "1.27.2", "available": "1.27.5"}
        assert event["image"]["reference"] == image
        assert (
            service.metrics_registry.get_sample_value(
                "regmon_image_newer_version_info", {"image": image, "version": "1.27.5"}
            )
            == 1
        )

    run(config, body)


class Vanishing(CountingProxy):
    """The registry, until ``gone``: then the repository is unknown, as a registry answers
    for a repository deleted as a whole (``NAME_UNKNOWN`` / ``MANIFEST_UNKNOWN``)."""

    gone = False

    def respond(self, request: RecordedRequest) -> Reply:
        if self.gone and request.path.startswith("/v2/") and request.path != "/v2/":
            code = "NAME_UNKNOWN" if request.path.endswith("/tags/list") else "MANIFEST_UNKNOWN"
            body = json.dumps({"errors": [{"code": code, "message": "unknown"}]}).encode()
            return Reply(404, [("Content-Type", "application/json")], body)
        return super().respond(request)


def test_a_repository_that_goes_missing_keeps_its_tags_and_they_go_missing(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo()
    for tag in ("1.0.0", "1.1.0"):
        pusher.push_image(repo, tag)
    with Vanishing(registry.host) as proxy:
        key = f"{proxy.host}/{repo}"
        config = write(tmp_path / "regmon.yaml", proxy.host, repo, db=db_url)

        async def body(service: Service) -> None:
            await service.list_repository(key)
            await checked(service, key)
            proxy.gone = True
            shown = await service.list_repository(key)
            assert (shown.status, shown.detail) == (Status.MISSING, "name unknown")
            assert tagged(service, key) == ["1.0.0", "1.1.0"]  # nothing deleted
            for tag in ("1.0.0", "1.1.0"):
                state = await service.check_now(f"{key}:{tag}")
                assert state.status is Status.MISSING
            await service.flush()
            assert [(kind, tag) for kind, tag, _ in events(service)] == [
                ("tag.missing", "1.0.0"),  # missing_after: 1
                ("tag.missing", "1.1.0"),
            ]

        run(config, body)
