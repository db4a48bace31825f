"""A registry outage end to end: one registry.failing and one registry.recovered per webhook.

The real service watches five tags of a real registry through a loopback
proxy (tests/support/faults.py ``CountingProxy``). The proxy fails one
repository alone (a flaky tag on a healthy registry: per-tag events, sent),
then the registry itself is stopped (the proxy answers 502: every check is an
``error``), the service is restarted in the middle of the outage, and the
registry comes back. Two receivers count what arrives.

Before registry events, this outage sent each webhook 10 deliveries (5
``check.failing``, 5 ``check.recovered``); now it sends 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.faults import CountingProxy, RecordedRequest, Reply
from support.images import ImagePusher
from support.receiver import WebhookReceiver
from support.registry import RegistryServer
from support.service import RegmonProcess, metric_key
from support.wait import wait_for

SECRET = "whsec_C2VjcmV0LWZvci1yZWdtb24tZTJlLXRlc3Rz"
TAGS = 5


class FlakyProxy(CountingProxy):
    """Forwards to the registry, except that requests for ``failing`` repositories get 500."""

    def __init__(self, upstream_host: str) -> None:
        super().__init__(upstream_host, timeout=5.0)
        self.failing: set[str] = set()

    def respond(self, request: RecordedRequest) -> Reply:
        if any(request.path.startswith(f"/v2/{repo}/") for repo in set(self.failing)):
            return Reply(500, [("Content-Type", "text/plain")], b"flaky")
        return super().respond(request)


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, WebhookReceiver]]:
    with WebhookReceiver(SECRET) as ops, WebhookReceiver(SECRET) as chat:
        yield ops, chat


def types(rx: WebhookReceiver) -> list[str]:
    return [r.type for r in rx.delivered()]


def test_outage_of_five_tags_is_one_notification_each_way_per_webhook(
    registry_factory: Callable[..., RegistryServer],
    unique_repo: Callable[..., str],
    receivers: tuple[WebhookReceiver, WebhookReceiver],
    tmp_path: Path,
    db_url: str,
) -> None:
    registry = registry_factory()
    repos = [unique_repo(f"outage{i}") for i in range(TAGS)]
    with ImagePusher(registry.url) as pusher:
        for repo in repos:
            pusher.push_image(repo, "prod", seed=repo)
    ops, chat = receivers
    with FlakyProxy(registry.host) as proxy:
        refs = [f"{proxy.host}/{repo}:prod" for repo in repos]
        text = "\n".join(
            [
                f"database: {db_url}",
                "log: {level: info}",
                "defaults: {interval: 1s, jitter: 0%, missing_after: 1, failing_after: 2}",
                f"registries: {{'{proxy.host}': {{timeout: 1s}}}}",
                "webhooks:",
                f"  - {{name: ops, url: '{ops.url}', secret: '{SECRET}'}}",
                f"  - {{name: chat, url: '{chat.url}', secret: '{SECRET}'}}",
                "watch:",
                *(f"  - image: '{ref}'" for ref in refs),
            ]
        )
        svc = RegmonProcess(text + "\n", tmp_path)
        try:
            wait_for(
                lambda: all(svc.images()[ref]["status"] == "present" for ref in refs),
                message="the baseline of every tag",
            )
            failing = metric_key("regmon_registry_failing", registry=proxy.host)
            assert svc.metrics()[failing] == 0

            # One flaky tag on a healthy registry: its own check.failing and check.recovered.
            proxy.failing = {repos[0]}
            wait_for(lambda: types(ops) == ["check.failing"], message="the flaky tag fails")
            proxy.failing = set()
            expected = ["check.failing", "check.recovered"]
            wait_for(lambda: types(ops) == expected, message="the flaky tag recovers")
            wait_for(lambda: types(chat) == expected, message="chat hears of the flaky tag")

            # The registry goes down: one registry.failing, whichever tag tipped it.
            registry.stop()
            wait_for(
                lambda: (
                    types(ops)[2:] == ["registry.failing"]
                    and types(chat)[2:] == ["registry.failing"]
                ),
                message=f"one registry.failing, got {types(ops)}",
            )
            wait_for(
                lambda: len(svc.events(type="check.failing")) == 1 + TAGS,
                message="every tag's check.failing recorded",
            )
            assert svc.metrics()[failing] == 1
            body = ops.delivered()[2].body
            assert body["registry"] == {"name": proxy.host, "tags": TAGS, "errors": TAGS}
            assert body["reason"] == "server_error"

            # A restart in the middle of the outage announces nothing again.
            svc.stop()
            svc.start()
            assert svc.metrics()[failing] == 1
            for cycle in ("first", "second"):
                before = svc.images()[refs[0]]["last_checked"]
                wait_for(
                    lambda b=before: svc.images()[refs[0]]["last_checked"] != b,
                    message=f"{cycle} check after the restart",
                )
            assert types(ops) == [*expected, "registry.failing"]

            registry.start()
            wait_for(
                lambda: all(svc.images()[ref]["status"] == "present" for ref in refs),
                message="every tag present again",
            )
            wait_for(
                lambda: len(svc.events(type="check.recovered")) == 1 + TAGS,
                message="every tag's check.recovered recorded",
            )
            wait_for(
                lambda: (
                    types(ops)[3:] == ["registry.recovered"]
                    and types(chat)[3:] == ["registry.recovered"]
                ),
                message=f"one registry.recovered, got {types(ops)}",
            )
            assert svc.metrics()[failing] == 0
            # Another cycle: nothing late, nothing twice.
            before = svc.images()[refs[0]]["last_checked"]
            wait_for(lambda: svc.images()[refs[0]]["last_checked"] != before, message="a cycle")
            outage = ["registry.failing", "registry.recovered"]
            assert types(ops) == types(chat) == [*expected, *outage]
            assert len(ops.attempts) == len(chat.attempts) == 4
            assert ops.invalid == [] and chat.invalid == []

            # The per-tag events of the outage are recorded, with no delivery at all.
            events = svc.events()
            outage_tags = [
                e for e in events[2:] if e["type"] in ("check.failing", "check.recovered")
            ]
            assert sorted(e["type"] for e in outage_tags) == sorted(
                ["check.failing"] * TAGS + ["check.recovered"] * TAGS
            )
            assert {e["image"]["reference"] for e in outage_tags} == set(refs)
            assert all(e.get("deliveries", []) == [] for e in outage_tags)
            registry_events = [e for e in events if e["type"].startswith("registry.")]
            assert [e["type"] for e in registry_events] == outage
            assert ops.delivered_ids()[2:] == [e["id"] for e in registry_events]
            svc.stop()
        finally:
            svc.close()
