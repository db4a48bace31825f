"""The service wires registry outages: stored states at start, the watched registries on reload.

On SQLite and on PostgreSQL (``db_url``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from support.faults import CountingProxy, RecordedRequest, Reply
from support.images import ImagePusher
from support.receiver import WebhookReceiver
from support.registry import RegistryServer

from monitor.config import load_config
from monitor.domain import Status
from monitor.service import Service
from monitor.store import make_engine, upgrade
from monitor.store.models import metadata
from monitor.store.transactions import _write

FAILING = "regmon_registry_failing"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def write(path: Path, db: str, *refs: str) -> None:
    watches = "".join(f"  - image: {ref}\n" for ref in refs)
    path.write_text(f"database: {db}\ndefaults: {{interval: 1h, jitter: 0%}}\nwatch:\n{watches}")


def test_a_stored_outage_is_in_force_at_start_and_a_reload_follows_the_watched_registries(
    tmp_path: Path, db_url: str
) -> None:
    config, db = tmp_path / "regmon.yaml", db_url
    write(config, db, "127.0.0.1:9/a/one:v1", "127.0.0.1:9/a/two:v1", "127.0.0.2:9/b/one:v1")
    # What a service that stopped during an outage of 127.0.0.1:9 left in the store.
    engine = make_engine(db)
    upgrade(engine)
    with _write(engine) as conn:
        conn.execute(
            metadata.tables["registry_states"].insert(),
            [{"registry": "127.0.0.1:9", "failing": True, "since": T0, "updated_at": T0}],
        )
    engine.dispose()

    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        metrics = service.metrics_registry
        try:
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.1:9"}) == 1
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.2:9"}) == 0
            write(config, db, "127.0.0.2:9/b/one:v1")
            assert await service.reload() is True
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.1:9"}) is None
            assert metrics.get_sample_value(FAILING, {"registry": "127.0.0.2:9"}) == 0
        finally:
            await service.stop()

    asyncio.run(main())


class DownProxy(CountingProxy):
    """Forwards to the registry; with ``down``, every manifest request gets 502 (listings
    still answer, so a repository's tags can come and go during the outage)."""

    def __init__(self, upstream_host: str) -> None:
        super().__init__(upstream_host, timeout=5.0)
        self.down = False

    def respond(self, request: RecordedRequest) -> Reply:
        if self.down and "/manifests/" in request.path:
            return Reply(502, [("Content-Type", "text/plain")], b"down")
        return super().respond(request)


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.02)


def deliveries(engine: Engine, kind: str) -> list[tuple[dict[str, Any], list[str]]]:
    """Each stored event of type ``kind``: its body and the webhooks it is queued for."""
    tables = metadata.tables
    events, outbox = tables["events"], tables["deliveries"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.seq, events.c.payload).where(events.c.type == kind).order_by("seq")
        ).all()
        return [
            (
                payload,
                sorted(conn.scalars(select(outbox.c.webhook).where(outbox.c.event_seq == seq))),
            )
            for seq, payload in rows
        ]


def test_tags_from_listings_count_in_their_registry_and_hear_of_its_outage(
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    tmp_path: Path,
    db_url: str,
) -> None:
    listed, single, elsewhere = unique_repo("listed"), unique_repo("single"), unique_repo("other")
    for tag in ("1.0.0", "1.1.0"):
        pusher.push_image(listed, tag, seed=tag)
    pusher.push_image(single, "v1")
    pusher.push_image(elsewhere, "1.0.0")
    with DownProxy(registry.host) as proxy, WebhookReceiver(None) as receiver:
        host = proxy.host
        repository, static = f"{host}/{listed}", f"{host}/{single}:v1"
        config = tmp_path / "regmon.yaml"
        config.write_text(
            f"database: {db_url}\n"
            f"docker_config: {tmp_path / 'none.json'}\n"
            "defaults: {interval: 1h, jitter: 0%, failing_after: 2}\n"
            f"registries: {{'{host}': {{timeout: 1s}}}}\n"
            "webhooks:\n"
            f"  - {{name: ops, url: '{receiver.url}'}}\n"
            f"  - {{name: team, url: '{receiver.url}'}}\n"
            "watch:\n"
            f"  - {{repository: '{repository}', webhooks: [team]}}\n"
            f"  - {{image: '{static}', webhooks: [ops]}}\n"
            # A registry that only a listing brings in.
            f"  - {{repository: '{registry.host}/{elsewhere}', webhooks: [team]}}\n"
        )
        tags = [f"{repository}:1.0.0", f"{repository}:1.1.0"]

        async def main() -> None:
            service = Service(load_config(str(config)), config_path=str(config))
            await service.start(serve_http=False)
            metrics = service.metrics_registry
            try:
                await service.list_repository(repository)
                await service.list_repository(f"{registry.host}/{elsewhere}")
                await until(lambda: all(service.states().get(w.key) for w in service.watches()))
                assert metrics.get_sample_value(FAILING, {"registry": registry.host}) == 0

                proxy.down = True
                for key in [*tags, static]:  # one error each: not failing_after yet
                    assert (await service.check_now(key)).status is Status.ERROR
                # The static tag's second error tips its registry: the repository's
                # webhook hears of it too, as its tags are of that registry.
                for key in [static, *tags]:
                    await service.check_now(key)
                [(failing, sent)] = deliveries(service.engine, "registry.failing")
                assert (failing["image"]["reference"], failing["registry"]) == (
                    static,
                    {"name": host, "tags": 3, "errors": 3},
                )
                assert sent == ["ops", "team"]
                assert [hooks for _, hooks in deliveries(service.engine, "check.failing")] == [
                    [],
                    [],
                    [],
                ]

                # A tag deleted during the outage no longer counts: 1 of 2 in error is
                # not an outage once the static tag answers.
                await asyncio.to_thread(pusher.delete_tag, listed, "1.0.0")
                await service.list_repository(repository)
                proxy.down = False
                await service.check_now(static)
                [(recovered, sent)] = deliveries(service.engine, "registry.recovered")
                assert recovered["registry"] == {"name": host, "tags": 2, "errors": 1}
                assert sent == ["ops", "team"]
                assert metrics.get_sample_value(FAILING, {"registry": host}) == 0
            finally:
                await service.stop()

        asyncio.run(main())
