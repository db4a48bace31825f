"""Repository watches in the service against the real registry (SPEC §9, issue 11).

Tags come and go between listings: exactly one ``tag.created`` / ``tag.deleted``
each, written with the tag's state; a listing that fails deletes nothing;
``max`` moving on unwatches without ``tag.deleted``; signature tags are never
selected; a reload that keeps the repository and a restart keep its tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.images import ImagePusher
from support.paging import PagingProxy
from support.registry import RegistryServer

from monitor.config import load_config
from monitor.domain import Status
from monitor.service import Service
from monitor.store.repository import active_watches, history_for, list_events

SIG = "sha256-" + "ab" * 32 + ".sig"


def write(path: Path, host: str, repo: str, extra: str = "") -> Path:
    path.write_text(
        f"database: sqlite:///{path.parent / 'regmon.db'}\n"
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


def events(service: Service) -> list[tuple[str, str, str | None]]:
    return [
        (e["type"], e["image"]["tag"], e["current"]["digest"])
        for e in list_events(service.engine)
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
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], tmp_path: Path
) -> None:
    repo = unique_repo()
    key = f"{registry.host}/{repo}"
    for tag in ("1.0.0", "1.1.0", "latest", SIG):
        pusher.push_image(repo, tag)
    config = write(tmp_path / "regmon.yaml", registry.host, repo)
    pushed: dict[str, str] = {}

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
