"""Webhooks end to end: the real service, a real registry, real receivers that verify signatures.

Each test runs ``python -m monitor run`` (tests/support/service.py) against a
registry of its own and one or more ``WebhookReceiver``s, changes tags with
the pusher and asserts on what the receivers got: which events, in which
order, how often, and how failures were retried. The service runs on SQLite and on
PostgreSQL (``db_url``); ``regmon webhook test`` touches no store and runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from support.images import ImagePusher
from support.receiver import WebhookReceiver
from support.registry import RegistryServer
from support.service import RegmonProcess, run_cli
from support.wait import wait_for

SECRET = "whsec_C2VjcmV0LWZvci1yZWdtb24tZTJlLXRlc3Rz"
URL_PASSWORD = "urlpassw0rd-e2e"
PATH_SECRET = "T0PATHSECRET-e2e"


def hook_url(rx: WebhookReceiver | str) -> str:
    """The receiver's URL with credentials and a token path, as Slack-style URLs carry."""
    host = rx if isinstance(rx, str) else rx.host
    return f"http://hook:{URL_PASSWORD}@{host}/hook/{PATH_SECRET}"


def config(
    registry: RegistryServer,
    watches: dict[str, list[str] | None],
    hooks: dict[str, str],
    *,
    db: str,
    hook_options: str = "",
) -> str:
    lines = [
        f"database: {db}",
        # PostgreSQL: a start after SIGKILL waits for the killed process's lease to expire.
        "ha: {lease: 3s}",
        "log: {level: info}",
        "defaults: {interval: 1s, jitter: 0%, missing_after: 1, failing_after: 2}",
        "registries:",
        f"  '{registry.host}': {{timeout: 2s}}",
        "webhooks:",
    ]
    for name, url in hooks.items():
        extra = f", {hook_options}" if hook_options else ""
        lines.append(f"  - {{name: {name}, url: '{url}', secret: '{SECRET}'{extra}}}")
    lines.append("watch:")
    for ref, names in watches.items():
        only = "" if names is None else f", webhooks: [{', '.join(names)}]"
        lines.append(f"  - {{image: '{ref}'{only}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def own_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_factory()


@pytest.fixture
def pusher_for(own_registry: RegistryServer) -> Iterator[ImagePusher]:
    with ImagePusher(own_registry.url) as p:
        yield p


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as rx:
        yield rx


@pytest.fixture
def services() -> Iterator[list[RegmonProcess]]:
    started: list[RegmonProcess] = []
    yield started
    for svc in started:
        svc.close()


def types(rx: WebhookReceiver) -> list[str]:
    return [r.type for r in rx.delivered()]


def assert_no_secret_in_log(svc: RegmonProcess) -> None:
    log = svc.log_text()
    for secret in (SECRET, SECRET.removeprefix("whsec_"), URL_PASSWORD, PATH_SECRET):
        assert secret not in log, f"{secret!r} leaked into the service log\n{svc.log_tail()}"


def wait_delivered(rx: WebhookReceiver, expected: list[str], svc: RegmonProcess, t: float = 20):
    def check() -> bool:
        svc.assert_alive()
        got = types(rx)
        assert got == expected[: len(got)], f"unexpected deliveries {got}\n{svc.log_tail()}"
        return got == expected

    wait_for(check, timeout=t, message=f"deliveries {expected}, got {types(rx)}")


def test_tag_lifecycle_and_registry_outage_in_order_and_once(
    own_registry: RegistryServer,
    pusher_for: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    services: list[RegmonProcess],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("hook")
    ref = f"{own_registry.host}/{repo}:prod"
    first = pusher_for.push_image(repo, "prod", seed="v1")
    svc = RegmonProcess(
        config(own_registry, {ref: None}, {"ops": hook_url(receiver)}, db=db_url), tmp_path
    )
    services.append(svc)
    wait_for(lambda: svc.images()[ref]["digest"] == first.digest, message="baseline")

    second = pusher_for.push_image(repo, "prod", seed="v2")  # overwritten upstream
    wait_delivered(receiver, ["tag.changed"], svc)
    changed = receiver.delivered()[0].body
    assert changed["previous"]["digest"] == first.digest
    assert changed["current"]["digest"] == second.digest
    assert changed["image"]["reference"] == ref

    pusher_for.delete_tag(repo, "prod")
    wait_delivered(receiver, ["tag.changed", "tag.missing"], svc)
    pusher_for.push_image(repo, "prod", seed="v2")  # the same image comes back
    wait_delivered(receiver, ["tag.changed", "tag.missing", "tag.restored"], svc)
    assert receiver.delivered()[-1].body["same_digest"] is True

    own_registry.stop()  # an outage is check.failing, never tag.missing
    wait_delivered(receiver, [*types(receiver)[:3], "check.failing"], svc)
    own_registry.start()
    expected = ["tag.changed", "tag.missing", "tag.restored", "check.failing", "check.recovered"]
    wait_delivered(receiver, expected, svc)

    # Every stored event was delivered, with the stored body, and with its event id.
    events = svc.events()
    assert [e["type"] for e in events] == expected
    assert receiver.delivered_ids() == [e["id"] for e in events]
    stored = [{k: v for k, v in e.items() if k != "deliveries"} for e in events]
    assert [r.body for r in receiver.delivered()] == stored
    # The API's event history shows the delivery state.
    wait_for(
        lambda: all(
            [(d["webhook"], d["status"]) for d in e.get("deliveries", [])] == [("ops", "delivered")]
            for e in svc.events()
        ),
        message="deliveries recorded as delivered",
    )

    # A clean restart sends nothing again.
    svc.stop()
    svc.start()
    # Two check cycles after the restart, the dispatcher (1 s poll) has had its chances.
    for cycle in ("first", "second"):
        before = svc.images()[ref]["last_checked"]
        wait_for(lambda b=before: svc.images()[ref]["last_checked"] != b, message=f"{cycle} check")
    assert types(receiver) == expected
    assert len(receiver.attempts) == len(expected)
    assert receiver.invalid == []
    metrics = svc.metrics()
    assert metrics[("regmon_webhook_pending", frozenset({("webhook", "ops")}))] == 0
    assert_no_secret_in_log(svc)


def test_failing_receiver_and_sigkill_then_every_event_arrives_once_in_order(
    own_registry: RegistryServer,
    pusher_for: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    services: list[RegmonProcess],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("hook")
    ref = f"{own_registry.host}/{repo}:prod"
    digests = [pusher_for.push_image(repo, "prod", seed="v1").digest]
    receiver.answer(500)
    svc = RegmonProcess(
        config(own_registry, {ref: None}, {"ops": hook_url(receiver)}, db=db_url), tmp_path
    )
    services.append(svc)
    wait_for(lambda: svc.images()[ref]["digest"] == digests[0], message="baseline")

    # Two changes while the receiver answers 500.
    for count, seed in enumerate(("v2", "v3"), start=1):
        digests.append(pusher_for.push_image(repo, "prod", seed=seed).digest)
        wait_for(lambda n=count: len(svc.events()) == n, message=f"event for {seed}")
    events = svc.events()
    assert [e["type"] for e in events] == ["tag.changed", "tag.changed"]
    first_id, second_id = (e["id"] for e in events)
    wait_for(lambda: len(receiver.attempts_for(first_id)) >= 2, message="retries of the first")
    # Order: the second event is not sent while the first one is failing.
    assert receiver.attempts_for(second_id) == []

    # Killed mid-retry; the outbox keeps both. The receiver recovers while regmon is down.
    svc.kill()
    receiver.answer(200)
    svc.start()
    wait_delivered(receiver, ["tag.changed", "tag.changed"], svc, t=30)
    assert receiver.delivered_ids() == [first_id, second_id]
    bodies = [r.body for r in receiver.delivered()]
    assert [(b["previous"]["digest"], b["current"]["digest"]) for b in bodies] == [
        (digests[0], digests[1]),
        (digests[1], digests[2]),
    ]
    assert all(r.status == 500 for r in receiver.attempts_for(second_id)[:-1])
    assert receiver.invalid == []
    metrics = svc.metrics()
    ops = ("webhook", "ops")
    assert metrics[("regmon_webhook_deliveries_total", frozenset({ops, ("outcome", "delivered")}))]
    assert_no_secret_in_log(svc)
    svc.stop()


def test_final_410_retry_after_429_and_a_hung_receiver_that_delays_nothing_else(
    own_registry: RegistryServer,
    pusher_for: ImagePusher,
    unique_repo: Callable[..., str],
    services: list[RegmonProcess],
    tmp_path: Path,
    db_url: str,
) -> None:
    repo = unique_repo("hook")
    missing = f"{own_registry.host}/{repo}:never-pushed"
    present = f"{own_registry.host}/{repo}:prod"
    pusher_for.push_image(repo, "prod", seed="p")
    with (
        WebhookReceiver(SECRET) as gone,
        WebhookReceiver(SECRET) as limited,
        WebhookReceiver(SECRET) as stuck,
    ):
        gone.answer(410)
        limited.answer(429, {"Retry-After": "2"}, times=1)
        stuck.hang()
        hooks = {"gone": hook_url(gone), "limited": hook_url(limited), "stuck": hook_url(stuck)}
        # The missing tag's tag.missing goes to all three; the present tag has no webhook.
        text = config(
            own_registry,
            {missing: None, present: []},
            hooks,
            db=db_url,
            hook_options="timeout: 30s",
        )
        svc = RegmonProcess(text, tmp_path)
        services.append(svc)

        wait_for(lambda: len(limited.delivered()) == 1, timeout=15, message="429 then delivered")
        first, second = limited.attempts
        assert (first.status, second.status) == (429, 200)
        assert first.id == second.id
        assert second.at - first.at >= 2.0
        wait_for(lambda: stuck.hanging == 1, message="the stuck receiver holds its delivery")

        # While the stuck receiver holds its delivery, checks go on at their interval.
        def checked_at() -> datetime:
            return datetime.fromisoformat(svc.images()[present]["last_checked"])

        start = checked_at()
        wait_for(
            lambda: (checked_at() - start).total_seconds() >= 2,
            timeout=10,
            message="checks go on while a receiver hangs",
        )
        assert stuck.hanging == 1  # and the stuck delivery is still held

        assert len(gone.attempts) == 1  # 410 is final
        (event,) = svc.events()
        states = {d["webhook"]: d["status"] for d in event["deliveries"]}
        assert states == {"gone": "failed", "limited": "delivered", "stuck": "sending"}

        # Killed mid-send: the 'sending' row is sent again by the next start.
        svc.kill()
        stuck.answer(200)
        svc.start()
        wait_for(lambda: len(stuck.delivered()) == 1, timeout=15, message="resent after the kill")
        assert stuck.delivered()[0].id == event["id"]
        for cycle in ("first", "second"):  # give the dispatcher its chances to misbehave
            before = checked_at()
            wait_for(lambda b=before: checked_at() != b, message=f"{cycle} check after restart")
        assert len(gone.attempts) == 1 and len(limited.delivered()) == 1  # nothing sent twice
        assert gone.invalid == [] and limited.invalid == [] and stuck.invalid == []
        assert_no_secret_in_log(svc)
        svc.stop()


@pytest.mark.parametrize(("status", "code"), [(200, 0), (204, 0), (500, 3), (410, 3)])
def test_webhook_test_command_sends_a_signed_test_event(
    receiver: WebhookReceiver, tmp_path: Path, status: int, code: int
) -> None:
    receiver.answer(status)
    path = tmp_path / "regmon.yaml"
    path.write_text(
        f"webhooks:\n  - {{name: ops, url: '{hook_url(receiver)}', secret: '{SECRET}'}}\n"
        "watch: [nginx:1.27]\n"
    )
    proc = run_cli("webhook", "test", "ops", "--config", str(path))
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.splitlines()[0] == f"HTTP {status}"
    (got,) = receiver.attempts
    assert receiver.invalid == []
    assert got.type == "test" and got.body["image"]["reference"] == "docker.io/library/nginx:1.27"
    assert SECRET not in proc.stdout + proc.stderr and PATH_SECRET not in proc.stderr


def test_webhook_test_command_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "regmon.yaml"
    path.write_text(f"webhooks:\n  - {{name: ops, url: '{hook_url('127.0.0.1:9')}'}}\n")
    unknown = run_cli("webhook", "test", "nope", "--config", str(path))
    assert unknown.returncode == 2
    assert "no webhook named 'nope'" in unknown.stderr and "ops" in unknown.stderr
    refused = run_cli("webhook", "test", "ops", "--config", str(path))
    assert refused.returncode == 3
    assert "unreachable" in refused.stderr and "Traceback" not in refused.stderr
    assert URL_PASSWORD not in refused.stderr and PATH_SECRET not in refused.stderr


def test_webhook_test_command_masks_credentials_a_receiver_echoes(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    import base64

    receiver.answer(401, echo=True)
    path = tmp_path / "regmon.yaml"
    url = f"{hook_url(receiver)}?token=querytoken-e2e"
    path.write_text(f"webhooks:\n  - {{name: ops, url: '{url}', secret: '{SECRET}'}}\n")
    proc = run_cli("webhook", "test", "ops", "--config", str(path))
    assert proc.returncode == 3, proc.stderr
    (got,) = receiver.attempts
    basic = base64.b64encode(f"hook:{URL_PASSWORD}".encode()).decode()
    assert got.headers["authorization"] == f"Basic {basic}"
    lines = proc.stdout.splitlines()
    assert lines[:4] == [
        "HTTP 401",
        "receiver says 401",
        "you sent /***?***",
        "authorization: Basic ***",
    ]
    for secret in (basic, URL_PASSWORD, PATH_SECRET, "querytoken-e2e", SECRET):
        assert secret not in proc.stdout + proc.stderr
