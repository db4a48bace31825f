"""Channels end to end: ``batch:`` windows and ``apprise:`` targets from a real ``regmon run``.

The service (tests/support/service.py) watches tags of a registry of its own;
receivers are the real signature-verifying ``WebhookReceiver``, Apprise's
``json://`` posting to a receiver, and a real SMTP server (aiosmtpd) for
``mailto://``. Counts are exact: one outage of five tags is one batch
delivery, a SIGKILL mid-send resends the same batch under the same
``webhook-id``, and nothing arrives twice. The service runs on SQLite and on
PostgreSQL (``db_url``); ``regmon webhook test`` touches no store and runs once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.images import ImagePusher
from support.receiver import HUNG, WebhookReceiver
from support.registry import RegistryServer
from support.service import RegmonProcess, run_cli
from support.smtp import SMTP_PASSWORD, Mailbox, mailto
from support.wait import wait_for

SECRET = "whsec_C2VjcmV0LWZvci1yZWdtb24tY2hhbm5lbHM="
JSON_PASSWORD = "JsonPassw0rd-channels"


def config(registry: RegistryServer, refs: list[str], hooks: list[str], *, db: str) -> str:
    lines = [
        f"database: {db}",
        # PostgreSQL: a start after SIGKILL waits for the killed process's lease to expire.
        "ha: {lease: 3s}",
        "log: {level: info}",
        "defaults: {interval: 1s, jitter: 0%, missing_after: 1, failing_after: 2}",
        "registries:",
        f"  '{registry.host}': {{timeout: 2s}}",
        "webhooks:",
        *(f"  - {hook}" for hook in hooks),
        "watch:",
        *(f"  - {{image: '{ref}'}}" for ref in refs),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def own_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_factory()


@pytest.fixture
def pusher_for(own_registry: RegistryServer) -> Iterator[ImagePusher]:
    with ImagePusher(own_registry.url) as p:
        yield p


@pytest.fixture
def services() -> Iterator[list[RegmonProcess]]:
    started: list[RegmonProcess] = []
    yield started
    for svc in started:
        svc.close()


def settle(svc: RegmonProcess, ref: str, cycles: int = 3) -> None:
    """Let ``cycles`` more checks of ``ref`` pass: the dispatcher's chances to send more."""
    for cycle in range(cycles):
        before = svc.images()[ref]["last_checked"]
        wait_for(
            lambda b=before: svc.images()[ref]["last_checked"] != b,
            message=f"check {cycle + 1} of {cycles} after the deliveries",
        )


def test_an_outage_of_five_tags_is_one_batch_and_the_recovery_another(
    own_registry: RegistryServer,
    pusher_for: ImagePusher,
    unique_repo: Callable[..., str],
    services: list[RegmonProcess],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("batch")
    refs = [f"{own_registry.host}/{repo}:t{i}" for i in range(5)]
    for i in range(5):
        pusher_for.push_image(repo, f"t{i}", seed=f"s{i}")
    with WebhookReceiver(SECRET) as rx:
        # A webhook that takes the per-tag events only: registry.failing would stand for
        # all five (and then there is nothing to batch).
        hook = (
            f"{{name: ops, url: '{rx.url}', secret: '{SECRET}', batch: 2s,"
            " events: [check.failing, check.recovered]}"
        )
        svc = RegmonProcess(config(own_registry, refs, [hook], db=db_url), tmp_path)
        services.append(svc)
        wait_for(lambda: all(svc.images()[r]["digest"] for r in refs), message="baselines")

        own_registry.stop()
        wait_for(lambda: len(rx.attempts) == 1, timeout=30, message="the outage batch")
        own_registry.start()
        wait_for(lambda: len(rx.attempts) == 2, timeout=30, message="the recovery batch")
        settle(svc, refs[0])

        assert rx.invalid == []
        failing, recovered = rx.attempts  # exactly two requests for ten events
        assert [failing.status, recovered.status] == [200, 200]
        events = svc.events()
        by_type = {
            kind: [e["id"] for e in events if e["type"] == kind]
            for kind in ("check.failing", "check.recovered")
        }
        for got, kind in ((failing, "check.failing"), (recovered, "check.recovered")):
            assert got.body["type"] == "batch"
            assert [e["type"] for e in got.body["events"]] == [kind] * 5
            assert sorted(e["image"]["reference"] for e in got.body["events"]) == sorted(refs)
            # In order, and the webhook-id is the batch's (not an event id).
            assert [e["id"] for e in got.body["events"]] == by_type[kind]
            assert got.id == got.body["id"] and got.id.startswith("batch_" + by_type[kind][0])
        assert [e["type"] for e in events if e["type"].startswith("check.")] == [
            "check.failing"
        ] * 5 + ["check.recovered"] * 5
        svc.stop()


def test_sigkill_mid_send_resends_the_same_batch_once(
    own_registry: RegistryServer,
    unique_repo: Callable[..., str],
    services: list[RegmonProcess],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("batchkill")
    refs = [f"{own_registry.host}/{repo}:never-{i}" for i in range(3)]
    with WebhookReceiver(SECRET) as rx:
        rx.hang()
        hook = f"{{name: ops, url: '{rx.url}', secret: '{SECRET}', batch: 2s, timeout: 30s}}"
        svc = RegmonProcess(config(own_registry, refs, [hook], db=db_url), tmp_path)
        services.append(svc)
        wait_for(lambda: rx.hanging == 1, timeout=30, message="the batch is being sent")
        ids = [e["id"] for e in svc.events()]
        assert len(ids) == 3
        (event,) = [e for e in svc.events() if e["id"] == ids[0]]
        assert [d["status"] for d in event["deliveries"]] == ["sending"]

        svc.kill()  # SIGKILL between claim and the receiver's answer
        rx.answer(200)
        wait_for(lambda: rx.hanging == 0, message="the hung request is answered")
        svc.start()
        wait_for(lambda: len(rx.delivered()) == 1, timeout=30, message="the batch is resent")
        settle(svc, refs[0])

        first, second = rx.attempts
        assert (first.status, second.status) == (HUNG, 200)
        assert first.id == second.id and first.raw == second.raw  # the same delivery, again
        assert [e["id"] for e in second.body["events"]] == ids
        assert [e["type"] for e in second.body["events"]] == ["tag.missing"] * 3
        assert rx.invalid == []
        assert {d["status"] for e in svc.events() for d in e["deliveries"]} == {"delivered"}
        svc.stop()


def test_apprise_json_and_mailto_targets_get_events_and_a_receiver_down_then_up(
    own_registry: RegistryServer,
    unique_repo: Callable[..., str],
    services: list[RegmonProcess],
    smtp: Mailbox,
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("apprise")
    ref = f"{own_registry.host}/{repo}:never-pushed"
    # Bound, not listening: refused, and no other process can take the port (as it could
    # one from free_port()) before the receiver comes up on it.
    placeholder = socket.socket()
    placeholder.bind(("127.0.0.1", 0))
    down_port = placeholder.getsockname()[1]
    with placeholder, WebhookReceiver(None) as rx:
        json_url = f"json://hook:{JSON_PASSWORD}@{rx.host}/hook"
        later_url = f"json://hook:{JSON_PASSWORD}@127.0.0.1:{down_port}/hook"
        hooks = [
            f"{{name: chat, apprise: '{json_url}'}}",
            f"{{name: mail, apprise: '{mailto(smtp.port)}', events: [tag.missing]}}",
            f"{{name: later, apprise: '{later_url}'}}",
        ]
        svc = RegmonProcess(config(own_registry, [ref], hooks, db=db_url), tmp_path)
        services.append(svc)
        wait_for(lambda: len(rx.delivered()) == 1, timeout=30, message="the json:// post")
        wait_for(lambda: len(smtp.messages) == 1, timeout=30, message="the mail")

        def later_waits() -> bool:
            # A retry comes within 0.5 s of the failure: while it is in flight the row is
            # "sending", so wait for a moment between two attempts.
            (event,) = svc.events()
            later = next(d for d in event["deliveries"] if d["webhook"] == "later")
            return bool(later["attempts"] >= 1 and later["status"] == "pending")

        wait_for(later_waits, timeout=30, message="a failed attempt, pending")
        # The attempt is recorded first, logged next: the API can show it before the log.
        failed = f"failed: unreachable: json://***@127.0.0.1:{down_port}/***"
        wait_for(lambda: failed in svc.log_text(), message=f"{failed}\n{svc.log_tail()}")
        placeholder.close()
        with WebhookReceiver(None, port=down_port) as back:
            wait_for(lambda: len(back.delivered()) == 1, timeout=60, message="sent when back")
            settle(svc, ref)
            assert len(back.attempts) == 1
        settle(svc, ref, 1)

        (posted,) = rx.attempts
        assert posted.body["title"] == f"regmon: Tag missing: {ref}"
        assert posted.body["type"] == "failure"
        (mail,) = smtp.messages
        line = f"Tag missing: {ref} (status missing, reason manifest unknown)"
        assert posted.body["message"] == line
        assert mail["Subject"] == f"regmon: Tag missing: {ref}"
        assert mail.get_content().strip() == line
        assert smtp.envelopes == [("regmon@example.com", ["ops@example.com"])]
        text = svc.log_text() + svc.get("/api/v1/events").text + svc.get("/").text
        for secret in (JSON_PASSWORD, SMTP_PASSWORD):
            assert secret not in text
        svc.stop()


def test_webhook_test_command_sends_to_an_apprise_target(tmp_path: Path) -> None:
    path = tmp_path / "regmon.yaml"
    with WebhookReceiver(None) as rx:
        host = rx.host
        url = f"json://hook:{JSON_PASSWORD}@{host}/hook"
        path.write_text(f"webhooks:\n  - {{name: chat, apprise: '{url}'}}\n")
        sent = run_cli("webhook", "test", "chat", "--config", str(path))
        assert (sent.returncode, sent.stdout) == (0, f"sent to json://***@{host}/***\n")
        (got,) = rx.attempts
        assert got.body["title"] == "regmon: Test event: docker.io/regmon/webhook-test:latest"
    refused = run_cli("webhook", "test", "chat", "--config", str(path))  # nobody listens now
    assert refused.returncode == 3, refused.stderr
    assert f"unreachable: json://***@{host}/***" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert JSON_PASSWORD not in sent.stdout + sent.stderr + refused.stdout + refused.stderr
