"""Two real ``regmon run`` replicas on one real PostgreSQL (issue 14, SPEC §11).

Exactly one leads (checks, records, delivers); the other serves the API and
``/metrics`` from the store and takes over when the leader dies or freezes.
Every event is recorded once and delivered once; a delivery in flight when
its leader died is sent again by the next one with the same ``webhook-id``
(the documented at-least-once); a leader frozen past its lease writes and
delivers nothing when it runs again (fencing). Short leases keep this quick.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy import text
from support.images import ImagePusher
from support.paths import ROOT
from support.prometheus import PrometheusServer, require_prometheus_binaries, shorten_for
from support.receiver import HUNG, WebhookReceiver
from support.registry import RegistryServer
from support.service import RegmonFactory, RegmonProcess, metric_key
from support.wait import wait_for

from monitor.store.engine import make_engine

SECRET = "whsec_" + "cmVwbGljYXMtc2VjcmV0LTAxMjM0NTY3ODk="
LEASE = 1.5  # seconds; failover within two of them
SCRAPED_LEASE = 4.0  # longer than two scrape intervals plus one evaluation interval
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as rx:
        yield rx


def config(
    database: str,
    registry: RegistryServer,
    receiver: WebhookReceiver,
    *refs: str,
    lease: float = LEASE,
    interval: str = "1s",
) -> str:
    watches = "\n".join(f"  - image: '{ref}'" for ref in refs)
    return (
        f"database: {database}\n"
        f"ha: {{lease: {lease}s}}\n"
        f"defaults: {{interval: {interval}, jitter: 0%, missing_after: 1}}\n"
        f"registries:\n  '{registry.host}': {{timeout: 2s}}\n"
        f"webhooks:\n  - {{name: ops, url: '{receiver.url}', secret: '{SECRET}', timeout: 3s}}\n"
        f"watch:\n{watches}\n"
    )


def role(svc: RegmonProcess) -> str:
    answer: dict[str, Any] = svc.get("/readyz").json()
    return str(answer["role"])


def events(svc: RegmonProcess, kind: str) -> list[dict[str, Any]]:
    return [event for event in svc.events() if event["type"] == kind]


def start_pair(make: RegmonFactory, text_: str) -> tuple[RegmonProcess, RegmonProcess]:
    first = make(text_, "a")
    wait_for(lambda: role(first) == "leader", message=first.log_tail())
    second = make(text_, "b")
    assert role(second) == "follower", second.log_tail()
    return first, second


def finished_in_store(svc: RegmonProcess) -> bool:
    """Every delivery of every event recorded as delivered: a receiver's 200 comes before
    the leader records it, and a leader killed in between sends it again (at-least-once)."""
    deliveries = [d for e in svc.events() for d in e.get("deliveries", [])]
    return all(d["status"] == "delivered" for d in deliveries)


def take_over_seconds(follower: RegmonProcess, since: float) -> float:
    wait_for(lambda: role(follower) == "leader", timeout=15, message=follower.log_tail())
    return time.monotonic() - since


def lease_row(database: str) -> tuple[str, int]:
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT holder, epoch FROM leases")).one()
    finally:
        engine.dispose()
    return str(row.holder), int(row.epoch)


def test_one_leader_records_and_delivers_each_event_once_and_a_killed_one_is_replaced(
    postgres_url: str,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    regmon_factory: RegmonFactory,
) -> None:
    repo = unique_repo("replicas")
    one, two = f"{registry.host}/{repo}:one", f"{registry.host}/{repo}:two"
    pusher.push_image(repo, "one", seed="one-a")
    pusher.push_image(repo, "two", seed="two-a")
    text_ = config(postgres_url, registry, receiver, one, two)
    leader, follower = start_pair(regmon_factory, text_)
    wait_for(lambda: leader.images()[two]["status"] == "present", message=leader.log_tail())

    changed = pusher.push_image(repo, "one", seed="one-b")
    wait_for(lambda: len(receiver.delivered()) == 1, message=leader.log_tail())
    # The follower serves what the leader recorded, from the store.
    wait_for(lambda: follower.images()[one].get("digest") == changed.digest, timeout=10)
    assert [e["current"]["digest"] for e in events(follower, "tag.changed")] == [changed.digest]
    leading, following = leader.metrics(), follower.metrics()
    assert leading[metric_key("regmon_leader")] == 1.0
    assert following[metric_key("regmon_leader")] == 0.0
    assert not [key for key in following if key[0].startswith("regmon_image_")]
    available = metric_key(
        "regmon_image_available", image=one, registry=registry.host, repository=repo, tag="one"
    )
    assert leading[available] == 1.0
    assert not [key for key in following if key[0] == "regmon_checks_total"], following

    # SIGKILL the leader mid-cycle (it checks every second): the follower takes over.
    wait_for(lambda: finished_in_store(follower), message=leader.log_tail())
    holder, epoch = lease_row(postgres_url)
    leader.kill()
    took = take_over_seconds(follower, time.monotonic())
    assert took <= 2 * LEASE + 1.0, f"took over after {took:.2f}s\n{follower.log_tail()}"
    assert lease_row(postgres_url)[0] != holder and lease_row(postgres_url)[1] == epoch + 1
    pusher.delete_tag(repo, "two")
    wait_for(lambda: len(receiver.delivered()) == 2, message=follower.log_tail())
    again = pusher.push_image(repo, "one", seed="one-c")
    wait_for(lambda: len(receiver.delivered()) == 3, message=follower.log_tail())

    kinds = [(r.type, r.body["image"]["reference"]) for r in receiver.delivered()]
    assert kinds == [("tag.changed", one), ("tag.missing", two), ("tag.changed", one)]
    ids = receiver.delivered_ids()
    assert len(set(ids)) == 3 and len(receiver.attempts) == 3, receiver.attempts
    recorded = [e["id"] for e in follower.events()]
    assert recorded == ids, (recorded, ids)  # recorded once each, in order
    assert receiver.delivered()[-1].body["current"]["digest"] == again.digest
    assert not receiver.invalid
    assert "Traceback" not in follower.log_text()


def test_a_delivery_in_flight_when_its_leader_dies_is_sent_again_with_the_same_id(
    postgres_url: str,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    regmon_factory: RegmonFactory,
) -> None:
    repo = unique_repo("inflight")
    ref = f"{registry.host}/{repo}:v1"
    pusher.push_image(repo, "v1", seed="a")
    leader, follower = start_pair(regmon_factory, config(postgres_url, registry, receiver, ref))
    wait_for(lambda: leader.images()[ref]["status"] == "present", message=leader.log_tail())
    receiver.hang()
    pusher.push_image(repo, "v1", seed="b")
    wait_for(lambda: receiver.hanging == 1, message=leader.log_tail())
    leader.kill()  # mid-delivery: the row stays 'sending', claimed by a dead leader
    began = time.monotonic()
    receiver.answer(200)
    wait_for(lambda: len(receiver.delivered()) == 1, timeout=15, message=follower.log_tail())
    took = time.monotonic() - began
    assert took <= 2 * LEASE + 1.5, f"re-sent after {took:.2f}s\n{follower.log_tail()}"
    [event] = events(follower, "tag.changed")
    tries = receiver.attempts_for(event["id"])
    assert [r.status for r in tries] == [HUNG, 200], tries
    assert {r.headers["webhook-id"] for r in tries} == {event["id"]}
    assert "sending them again (receivers de-duplicate on webhook-id)" in follower.log_text()


def test_a_leader_frozen_past_its_lease_writes_and_delivers_nothing_when_it_runs_again(
    postgres_url: str,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    regmon_factory: RegmonFactory,
) -> None:
    repo = unique_repo("frozen")
    ref = f"{registry.host}/{repo}:v1"
    pusher.push_image(repo, "v1", seed="a")
    leader, follower = start_pair(regmon_factory, config(postgres_url, registry, receiver, ref))
    wait_for(lambda: leader.images()[ref]["status"] == "present", message=leader.log_tail())

    changed = pusher.push_image(repo, "v1", seed="b")
    os.kill(leader.pid, signal.SIGSTOP)  # mid-cycle: it may have checked, or be checking
    try:
        take_over_seconds(follower, time.monotonic())
        wait_for(lambda: len(receiver.delivered()) == 1, timeout=15, message=follower.log_tail())
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    wait_for(lambda: "lost the lead" in leader.log_text(), message=leader.log_tail())
    assert role(leader) == "follower"
    # A full cycle of the old leader's loops (checks every 1 s, renewals every 0.5 s).
    wait_for(lambda: leader.metrics()[metric_key("regmon_leader")] == 0.0)
    after = pusher.push_image(repo, "v1", seed="c")
    wait_for(lambda: len(receiver.delivered()) == 2, timeout=15, message=follower.log_tail())

    digests = [e["current"]["digest"] for e in events(follower, "tag.changed")]
    assert digests == [changed.digest, after.digest], digests
    assert len(receiver.attempts) == 2 and len(set(receiver.delivered_ids())) == 2
    log = leader.log_text()
    assert "Traceback" not in log, log[-4000:]
    assert role(follower) == "leader"
    assert log.count("leading (lease epoch") == 1, log[-4000:]

    # A clean stop hands the lease over at once; the replica that was frozen leads now.
    follower.stop()
    assert "lease released: another replica may lead at once" in follower.log_text()
    began = time.monotonic()
    took = take_over_seconds(leader, began)
    assert took < LEASE, f"took over {took:.2f}s after the stop\n{leader.log_tail()}"
    final = pusher.push_image(repo, "v1", seed="d")
    wait_for(lambda: len(receiver.delivered()) == 3, timeout=15, message=leader.log_tail())
    assert receiver.delivered()[-1].body["current"]["digest"] == final.digest
    assert len(receiver.attempts) == 3 and not receiver.invalid


def listed(svc: RegmonProcess) -> list[tuple[str, str | None]]:
    """The one repository watch's selected tags with their states, as ``svc`` serves them."""
    [repository] = svc.json("/api/v1/repositories")["repositories"]
    return sorted((tag["tag"], tag["status"]) for tag in repository["tags"])


def test_a_follower_serves_the_leaders_listings_and_goes_on_from_them_when_it_leads(
    postgres_url: str,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    regmon_factory: RegmonFactory,
) -> None:
    repo = unique_repo("listed")
    for tag in ("1.0.0", "1.1.0"):
        pusher.push_image(repo, tag, seed=tag)
    text_ = config(postgres_url, registry, receiver).replace(
        "watch:\n", f"watch:\n  - repository: '{registry.host}/{repo}'\n"
    )
    leader, follower = start_pair(regmon_factory, text_)
    baseline = [("1.0.0", "present"), ("1.1.0", "present")]
    wait_for(lambda: listed(leader) == baseline, message=leader.log_tail())
    # Within a follow period (lease / 3 = 0.5 s), with slack for a loaded machine: each
    # period is a PostgreSQL read in a thread of a process sharing 2 cores with the suite.
    follow = LEASE / 3 + 4.0
    wait_for(lambda: listed(follower) == baseline, timeout=follow, message=follower.log_tail())

    # Deleted and created upstream (in this order: one listing or two, tag.deleted comes
    # first): the leader's next listing, then the follower from the store.
    pusher.delete_tag(repo, "1.0.0")
    pusher.push_image(repo, "1.2.0", seed="1.2.0")
    after = [("1.1.0", "present"), ("1.2.0", "present")]
    wait_for(lambda: listed(leader) == after, timeout=10, message=leader.log_tail())
    wait_for(lambda: listed(follower) == after, timeout=follow, message=follower.log_tail())
    page = follower.get("/").text
    assert f'title="{registry.host}/{repo}:1.2.0"' in page
    assert f'title="{registry.host}/{repo}:1.0.0"' not in page
    assert sorted(follower.images()) == [f"{registry.host}/{repo}:{t}" for t in ("1.1.0", "1.2.0")]

    # The new leader lists on from the selection it followed: nothing created or deleted again.
    # Killed once its deliveries are done, received and recorded: a send in flight at the
    # kill is resent (the documented at-least-once retry; the SIGKILL tests above cover
    # it), not this test's subject. Seen on CI: the kill landed mid-send and the receiver
    # got one twice.
    # Events for one tag are delivered in order (SPEC §6); across tags, in any order.
    so_far = sorted(e["id"] for e in follower.events())
    wait_for(
        lambda: sorted(receiver.delivered_ids()) == so_far, timeout=10, message=leader.log_tail()
    )
    wait_for(lambda: finished_in_store(follower), message=leader.log_tail())
    leader.kill()
    take_over_seconds(follower, time.monotonic())
    pusher.push_image(repo, "1.3.0", seed="1.3.0")
    wait_for(
        lambda: (
            ("tag.created", "1.3.0") in [(e["type"], e["image"]["tag"]) for e in follower.events()]
        ),
        timeout=10,
        message=follower.log_tail(),
    )
    recorded = follower.events()
    # (1.0.0's own check may find it missing before the listing that deletes it.)
    listed_events = [(e["type"], e["image"]["tag"]) for e in recorded if e["type"] != "tag.missing"]
    assert listed_events == [
        ("tag.deleted", "1.0.0"),
        ("tag.created", "1.2.0"),
        ("tag.created", "1.3.0"),
    ]
    wait_for(
        lambda: sorted(receiver.delivered_ids()) == sorted(e["id"] for e in recorded),
        timeout=10,
        message=follower.log_tail(),
    )
    assert len(receiver.attempts) == len(recorded) and not receiver.invalid
    delivered = receiver.delivered_ids()
    for tag in ("1.0.0", "1.2.0", "1.3.0"):
        of_tag = [e["id"] for e in recorded if e["image"]["tag"] == tag]
        assert [i for i in delivered if i in of_tag] == of_tag, tag
    assert "Traceback" not in leader.log_text() + follower.log_text()


@pytest.mark.slow
def test_prometheus_scraping_both_replicas_sees_each_series_and_each_alert_once(
    postgres_url: str,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    receiver: WebhookReceiver,
    regmon_factory: RegmonFactory,
    tmp_path: Path,
) -> None:
    """The shipped rules (``for:`` shortened) over a real Prometheus scraping leader and
    follower: one series per image, one RegmonImageMissing, one leader; and after the
    leader is killed, still one of each, now from the other replica, and the alert is
    the one that fired before the failover: it never resolved and fired again."""
    require_prometheus_binaries()
    repo = unique_repo("scraped")
    present, missing = f"{registry.host}/{repo}:present", f"{registry.host}/{repo}:missing"
    pusher.push_image(repo, "present", seed="p")
    receiver.answer(500)  # the tag.missing delivery stays pending: a backlog series
    # Killed at k, the leader's next scrape fails by k + 1 s and Prometheus marks its series
    # stale; the follower cannot lead before k + 2/3 of a lease = k + 2.7 s: so at least one
    # rule evaluation (every 1 s) sees no per-image series at all, which the alert survives.
    # Checks every 2 s: the failover gap stays under the 4 intervals of RegmonChecksStale.
    text_ = config(
        postgres_url, registry, receiver, present, missing, lease=SCRAPED_LEASE, interval="2s"
    )
    leader, follower = start_pair(regmon_factory, text_)
    targets = [svc.url.removeprefix("http://") for svc in (leader, follower)]
    scrape = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "regmon", "static_configs": [{"targets": targets}]}],
    }
    rules = shorten_for(ALERTS, tmp_path / "alerts-short.yml", "2s")
    with PrometheusServer(tmp_path / "prometheus", scrape, rules) as prom:

        def values(expr: str) -> list[str]:
            return sorted(sample["value"][1] for sample in prom.query(expr))

        def settled(instance: str, up: list[str]) -> bool:
            return (
                values('up{job="regmon"}') == up
                and values("sum(regmon_leader)") == ["1"]
                and values(f'regmon_leader{{instance="{instance}"}}') == ["1"]
                and values("count(regmon_image_available)") == ["2"]
                and values("count(regmon_webhook_pending)") == ["1"]
                and len(missing_alerts(prom, missing)) == 1
            )

        wait_for(
            lambda: settled(targets[0], ["1", "1"]),
            timeout=30,
            interval=0.2,
            message=prom.read_log(),
        )
        [alert] = missing_alerts(prom, missing)
        # The rules aggregate the replicas away, so a failover keeps the alert's identity.
        assert alert["state"] == "firing" and "instance" not in alert["labels"]
        assert values("count(regmon_image_available)") == ["2"]
        assert values(f'count(regmon_image_available{{instance="{targets[1]}"}})') == []

        killed = time.monotonic()
        leader.kill()
        wait_for(lambda: role(follower) == "leader", timeout=15, message=follower.log_tail())
        wait_for(
            lambda: settled(targets[1], ["0", "1"]),
            timeout=30,
            interval=0.2,
            message=prom.read_log(),
        )
        # The killed replica is a RegmonReplicaDown of its own, never RegmonDown (which
        # would hold the missing image's alert back in Alertmanager).
        wait_for(
            lambda: (
                {a["labels"]["alertname"] for a in prom.alerts() if a["state"] == "firing"}
                == {"RegmonImageMissing", "RegmonReplicaDown"}
            ),
            timeout=10,
            interval=0.2,
            message=prom.read_log(),
        )
        assert [a["labels"]["alertname"] for a in prom.alerts()].count("RegmonDown") == 0
        # The same alert, never resolved in between: one that resolved and fired again
        # would be a new one, active since the failover.
        assert missing_alerts(prom, missing) == [alert | {"value": ANY}]
        for_state = f'ALERTS_FOR_STATE{{alertname="RegmonImageMissing",image="{missing}"}}'
        assert values(f"changes({for_state}[1h])") == ["0"]
        assert values(f"count(count_over_time({for_state}[1h]))") == ["1"]
        # And the failover did leave a gap with no per-image series from either replica.
        since = int(time.monotonic() - killed) + 1
        gap = f'absent(regmon_image_available{{image="{missing}"}})[{since}s:1s]'
        assert values(f"max_over_time({gap})") == ["1"]
        # Every shipped rule evaluated without error over both replicas' series.
        rules = [r for g in prom.rule_groups() for r in g["rules"]]
        errors = {r["name"]: r.get("lastError") for r in rules if r["health"] == "err"}
        assert errors == {}, errors


def missing_alerts(prom: PrometheusServer, image: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in prom.alerts()
        if alert["labels"].get("alertname") == "RegmonImageMissing"
        and alert["labels"].get("image") == image
        and alert["state"] == "firing"
    ]
