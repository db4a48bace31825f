"""`regmon run` end to end: the real service as a subprocess against real registries.

Every scenario starts its own service (``RegmonProcess``) on a fresh database
(``db_url``: each scenario runs on SQLite and on PostgreSQL), watching its own
repositories, with 1 s intervals and no jitter, and observes it only from outside:
``/api/v1``, ``/metrics`` (parsed with prometheus-client's parser), the status page,
the log and the CLI. Waits are conditions on what the service reports, never fixed
sleeps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from support.faults import hung_server
from support.images import ImagePusher
from support.registry import RegistryServer
from support.service import RegmonProcess, metric_key, run_cli
from support.wait import wait_for

import monitor
from monitor.store.engine import make_engine

FAST = "defaults: {interval: 1s, jitter: 0%, missing_after: 2, failing_after: 2}\n"
BROKEN_INTERVAL = "defaults: {interval: 5 minutes, jitter: 0%}\n"

Service = Callable[..., RegmonProcess]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """``service(config_text, name="svc")`` starts a RegmonProcess; all are killed afterwards."""
    started: list[RegmonProcess] = []

    def make(config: str, name: str = "svc", **kwargs: Any) -> RegmonProcess:
        proc = RegmonProcess(config, tmp_path / name, start=False, **kwargs)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.close()


def watch_yaml(*refs: str, head: str = FAST) -> str:
    return head + "watch:\n" + "".join(f"  - image: {ref}\n" for ref in refs)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def wait_event(svc: RegmonProcess, ref: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first ``kind`` event of ``ref``, once the service has recorded it."""

    def found() -> dict[str, Any] | None:
        matches = of_type(svc.events(image=ref), kind)
        return matches[0] if matches else None

    event: dict[str, Any] = wait_for(
        found, timeout=timeout, interval=0.1, message=f"{kind} for {ref}\n{svc.log_tail()}"
    )
    return event


def wait_image(
    svc: RegmonProcess,
    ref: str,
    predicate: Callable[[dict[str, Any]], object],
    what: str,
    timeout: float = 10.0,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        image = svc.images().get(ref)
        return image if image is not None and predicate(image) else None

    image: dict[str, Any] = wait_for(
        check,
        timeout=timeout,
        interval=0.1,
        message=f"{ref}: {what}; now {svc.images().get(ref)}\n{svc.log_tail()}",
    )
    return image


def present_with(digest: str) -> Callable[[dict[str, Any]], bool]:
    return lambda image: image["status"] == "present" and image["digest"] == digest


def cli_json(*args: str) -> Any:
    proc = run_cli(*args)
    assert proc.returncode == 0, f"regmon {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


# --- 1. changed / missing / restored


def test_overwrite_delete_and_restore_a_tag(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("e2e")
    ref = f"{registry.host}/{repo}:v1"
    old = pusher.push_image(repo, "v1", seed="old")
    svc = service(f"database: {db_url}\n" + watch_yaml(ref))  # on each backend
    wait_image(svc, ref, present_with(old.digest), "baseline present with the old digest")

    # Overwritten upstream: exactly one tag.changed, old -> new.
    new = pusher.push_image(repo, "v1", seed="new")
    assert new.digest != old.digest
    changed = wait_event(svc, ref, "tag.changed")
    assert changed["previous"] == {"status": "present", "digest": old.digest}
    assert changed["current"]["status"] == "present"
    assert changed["current"]["digest"] == new.digest
    wait_image(svc, ref, lambda image: image["last_checked"] > changed["occurred_at"], "recheck")
    assert len(of_type(svc.events(image=ref), "tag.changed")) == 1, svc.events(image=ref)

    # Deleted: tag.missing only after missing_after=2 consecutive missing checks.
    deleted_at = time.monotonic()
    assert pusher.delete_tag(repo, "v1") == new.digest
    missing = wait_event(svc, ref, "tag.missing")
    waited = time.monotonic() - deleted_at
    image = svc.image(ref)
    assert image["status"] == "missing"
    assert image["consecutive_misses"] >= 2, image
    # Two checks one interval (1 s) apart both came after the deletion.
    assert waited >= 0.9, f"tag.missing {waited:.2f}s after the deletion: fewer than 2 checks"
    assert missing["previous"] == {"status": "present", "digest": new.digest}
    assert missing["current"]["status"] == "missing"
    # What was seen stays known while the tag is gone.
    assert image["digest"] == new.digest
    assert image["first_seen"] is not None
    history = svc.json(f"/api/v1/images/{ref}/history")["history"]
    assert [row["digest"] for row in history if row["status"] == "present"] == [
        old.digest,
        new.digest,
    ], history
    assert history[-1]["status"] == "missing", history

    # Pushed back with the same content: tag.restored, same digest.
    again = pusher.push_image(repo, "v1", seed="new")
    assert again.digest == new.digest
    restored = wait_event(svc, ref, "tag.restored")
    assert restored["current"] == {
        "status": "present",
        "digest": new.digest,
        "checked_at": restored["current"]["checked_at"],
    }
    assert restored["previous"]["digest"] == new.digest
    assert restored["same_digest"] is True

    events = svc.events(image=ref)
    assert types(events) == ["tag.changed", "tag.missing", "tag.restored"], events
    # The unfiltered list holds the same events for this (only) watch, oldest first.
    assert [e["id"] for e in svc.events()] == [e["id"] for e in events]
    assert [e["occurred_at"] for e in events] == sorted(e["occurred_at"] for e in events)

    samples = svc.metrics()
    # A restore with the digest it had before is not a change: old -> new is the only one.
    assert samples[metric_key("regmon_image_digest_changes_total", image=ref)] == 1

    # The CLI reads the same database while the service runs (SQLite WAL).
    cli = cli_json("history", ref, "--json", "--config", str(svc.config_path))
    assert cli["reference"] == ref
    timeline = [(row["status"], row["digest"]) for row in cli["history"]]
    assert timeline[:2] == [("present", old.digest), ("present", new.digest)], timeline
    assert [status for status, _ in timeline[2:]] == ["missing", "present"], timeline
    assert timeline[-1] == ("present", new.digest)
    assert [e["type"] for e in cli["events"]] == types(events)
    assert [e["id"] for e in cli["events"]] == [e["id"] for e in events]


# --- 2. outage


def test_registry_outage_is_failing_never_missing(
    db_url: str,
    service: Service,
    registry_factory: Callable[..., RegistryServer],
) -> None:
    reg = registry_factory()
    with ImagePusher(reg.url) as own:
        image = own.push_image("outage/app", "v1", seed="outage")
    ref = f"{reg.host}/outage/app:v1"
    svc = service(f"database: {db_url}\n" + watch_yaml(ref))
    wait_image(svc, ref, present_with(image.digest), "present before the outage")

    reg.stop()
    failing = wait_event(svc, ref, "check.failing")
    assert failing["current"]["status"] == "error"
    assert failing["reason"] == "unreachable", failing
    # More errors than missing_after: an outage must never count as missing.
    wait_image(svc, ref, lambda i: i["consecutive_errors"] >= 3, "three errors in a row")

    samples = svc.metrics()
    assert (
        samples[
            metric_key(
                "regmon_image_available",
                image=ref,
                registry=reg.host,
                repository="outage/app",
                tag="v1",
            )
        ]
        == 1
    ), "regmon_image_available must keep the last decided value during an outage"
    # One status series per image: the current one.
    assert {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "regmon_image_status" and dict(labels)["image"] == ref
    } == {"error": 1}
    assert samples[metric_key("regmon_image_digest_info", image=ref, digest=image.digest)] == 1
    assert samples[metric_key("regmon_registry_up", registry=reg.host)] == 0
    assert (
        samples[
            metric_key(
                "regmon_checks_total", registry=reg.host, status="error", reason="unreachable"
            )
        ]
        >= 3
    )
    state = svc.image(ref)
    assert state["decided_status"] == "present"
    assert state["digest"] == image.digest
    assert state["consecutive_misses"] == 0
    assert of_type(svc.events(), "tag.missing") == []

    reg.start()
    recovered = wait_event(svc, ref, "check.recovered")
    assert recovered["current"] == {
        "status": "present",
        "digest": image.digest,
        "checked_at": recovered["current"]["checked_at"],
    }
    wait_image(svc, ref, present_with(image.digest), "present after the outage")
    # Nothing but the outage itself: no missing, no restore, no change.
    assert types(svc.events()) == ["check.failing", "check.recovered"]


# --- 3. restart


def test_restart_repeats_no_event_and_keeps_counters(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("restart")
    ref, gone = f"{registry.host}/{repo}:v1", f"{registry.host}/{repo}:gone"
    first = pusher.push_image(repo, "v1", seed="first")
    svc = service(f"database: {db_url}\n" + watch_yaml(ref, gone))  # on each backend
    wait_image(svc, ref, present_with(first.digest), "baseline")
    wait_event(svc, gone, "tag.missing")
    second = pusher.push_image(repo, "v1", seed="second")
    wait_event(svc, ref, "tag.changed")
    before = svc.events()
    assert types(before) == ["tag.missing", "tag.changed"], before
    first_seen = svc.image(ref)["first_seen"]
    assert svc.metrics()[metric_key("regmon_image_digest_changes_total", image=ref)] == 1

    svc.stop()  # SIGTERM -> exit 0 (asserted)
    svc.start()  # same config, same database

    def checked_again() -> bool:
        samples = svc.metrics()
        present = samples.get(
            metric_key("regmon_checks_total", registry=registry.host, status="present", reason="")
        )
        missing = samples.get(
            metric_key("regmon_checks_total", registry=registry.host, status="missing", reason="")
        )
        return (present or 0) >= 3 and (missing or 0) >= 3

    wait_for(checked_again, timeout=10, message=f"3 checks after restart\n{svc.log_tail()}")
    after = svc.events()
    assert after == before, "a restart must emit no event twice and lose none"
    samples = svc.metrics()
    assert samples[metric_key("regmon_image_digest_changes_total", image=ref)] == 1
    image = svc.image(ref)
    assert image["digest"] == second.digest
    assert image["first_seen"] == first_seen
    assert svc.image(gone)["status"] == "missing"


# --- 4. reload


def test_reload_on_sighup_refuses_a_broken_config_and_follows_file_changes(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("reload")
    one, two = f"{registry.host}/{repo}:one", f"{registry.host}/{repo}:two"
    one_image = pusher.push_image(repo, "one", seed="one")
    two_image = pusher.push_image(repo, "two", seed="two")
    db = f"database: {db_url}\n"
    svc = service(db + watch_yaml(one))
    pid = svc.pid
    first_seen = wait_image(svc, one, present_with(one_image.digest), "present")["first_seen"]
    assert list(svc.images()) == [one]

    # SIGHUP alone (the file's mtime is kept, so the mtime poll cannot be what reloads).
    svc.write_config(db + watch_yaml(one, two), keep_mtime=True)
    svc.send_hup()
    wait_image(svc, two, present_with(two_image.digest), "the added watch checked")
    assert svc.pid == pid
    assert svc.image(one)["first_seen"] == first_seen
    assert svc.metrics()[metric_key("regmon_watched_images")] == 2
    assert "config reloaded: 2 watches (1 added, 0 removed" in svc.log_text()

    # A broken file is refused with one line naming the key; the old watches keep going.
    svc.write_config(db + BROKEN_INTERVAL + "watch:\n" + f"  - image: {one}\n")
    svc.send_hup()
    refused = wait_for(
        lambda: [line for line in svc.log_text().splitlines() if "reload refused" in line],
        timeout=5,
        message=f"reload refused in the log\n{svc.log_tail()}",
    )
    assert "defaults.interval" in refused[0], refused
    assert "Traceback" not in svc.log_text(), svc.log_tail()
    checked = {ref: image["last_checked"] for ref, image in svc.images().items()}
    assert set(checked) == {one, two}
    for ref in (one, two):
        wait_image(svc, ref, lambda i, r=ref: i["last_checked"] > checked[r], "checked again")

    # No signal: the service notices the file changed and drops the removed watch.
    svc.write_config(db + watch_yaml(two))
    wait_for(
        lambda: list(svc.images()) == [two],
        timeout=5,
        message=f"{one} removed from /api/v1/images\n{svc.log_tail()}",
    )
    assert svc.metrics()[metric_key("regmon_watched_images")] == 1
    assert svc.image(two)["status"] == "present"
    assert svc.pid == pid


# --- 5 + 6. metrics, pages, probes


def test_metrics_status_page_probes_and_status_cli(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("metrics")
    here, absent = f"{registry.host}/{repo}:here", f"{registry.host}/{repo}:absent"
    image = pusher.push_image(repo, "here", seed="here")
    svc = service(f"database: {db_url}\n" + watch_yaml(here, absent))
    wait_image(svc, here, present_with(image.digest), "present")
    wait_image(svc, absent, lambda i: i["status"] == "missing", "missing")

    samples = svc.metrics()
    host = registry.host

    def available(ref: str, tag: str) -> float | None:
        key = metric_key(
            "regmon_image_available", image=ref, registry=host, repository=repo, tag=tag
        )
        return samples.get(key)

    assert available(here, "here") == 1
    assert available(absent, "absent") == 0
    statuses = {
        (dict(labels)["image"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "regmon_image_status"
    }
    assert statuses == {(here, "present"): 1, (absent, "missing"): 1}
    digests = {
        dict(labels)["image"]: (dict(labels)["digest"], value)
        for (name, labels), value in samples.items()
        if name == "regmon_image_digest_info"
    }
    assert digests == {here: (image.digest, 1.0)}, "a never-seen tag has no digest series"
    checks = {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "regmon_checks_total" and dict(labels)["registry"] == host
    }
    assert checks.get("present", 0) > 0 and checks.get("missing", 0) > 0, checks
    assert samples[metric_key("regmon_watched_images")] == 2
    assert samples[metric_key("regmon_build_info", version=monitor.__version__)] == 1
    heads = {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "regmon_registry_requests_total"
        and dict(labels)["registry"] == host
        and dict(labels)["method"] == "HEAD"
    }
    assert heads.get("200", 0) > 0, heads
    assert samples[metric_key("regmon_image_check_interval_seconds", image=here)] == 1
    for name in ("last_check", "last_decided", "last_change"):
        stamp = samples[metric_key(f"regmon_image_{name}_timestamp_seconds", image=here)]
        assert abs(stamp - time.time()) < 60, (name, stamp)

    # The status page, the probes.
    page = svc.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert here in page.text and absent in page.text
    assert image.digest in page.text
    assert svc.get("/healthz").status_code == 200
    assert svc.get("/readyz").status_code == 200

    # No api_token configured: POST endpoints are refused whatever is sent.
    for headers in ({}, {"Authorization": "Bearer anything"}):
        refused = svc.post(f"/api/v1/images/{here}/check", headers=headers)
        assert refused.status_code == 403, refused.text

    # `regmon status` reads the database the running service writes.
    status = cli_json("status", "--json", "--config", str(svc.config_path))
    rows = {row["reference"]: row for row in status["images"]}
    assert set(rows) == {here, absent}
    assert rows[here]["status"] == "present"
    assert rows[here]["digest"] == image.digest
    assert rows[absent]["status"] == "missing"


def test_check_now_needs_the_bearer_token(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("token")
    ref = f"{registry.host}/{repo}:v1"
    image = pusher.push_image(repo, "v1", seed="token")
    # One scheduled check at start, the next in an hour: a later last_checked is ours.
    head = f"database: {db_url}\napi_token: t0ken\ndefaults: {{interval: 1h, jitter: 0%}}\n"
    svc = service(watch_yaml(ref, head=head))
    before = wait_image(svc, ref, present_with(image.digest), "first check")["last_checked"]
    url = f"/api/v1/images/{ref}/check"

    missing = svc.post(url)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"].lower().startswith("bearer")
    for wrong in ("Bearer nope", "Basic dDBrZW4=", "t0ken"):
        answer = svc.post(url, headers={"Authorization": wrong})
        assert answer.status_code == 401, (wrong, answer.text)

    # Timestamps have whole seconds: let the clock pass the first check's second.
    first = parse_ts(before).timestamp()
    wait_for(lambda: int(time.time()) > first, timeout=3, message="the clock passes a second")
    posted_at = int(time.time())
    ok = svc.post(url, headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["reference"] == ref
    assert body["status"] == "present"
    assert body["digest"] == image.digest
    assert body["last_checked"] > before
    assert parse_ts(body["last_checked"]).timestamp() >= posted_at
    checks = svc.metrics()[
        metric_key("regmon_checks_total", registry=registry.host, status="present", reason="")
    ]
    assert checks == 2, "one scheduled check and the one asked for"


# --- 7. CLI around the service


def test_config_validate_and_db_upgrade(
    tmp_path: Path, registry: RegistryServer, db_url: str
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_INTERVAL + f"watch:\n  - image: {registry.host}/x/y:v1\n")
    proc = run_cli("config", "validate", str(broken))
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    message = proc.stderr.strip()
    assert message.count("\n") == 0, message
    assert "defaults.interval" in message and str(broken) in message, message
    assert "Traceback" not in proc.stderr

    config = tmp_path / "regmon.yaml"
    ref = f"{registry.host}/x/y:v1"
    config.write_text(f"database: {db_url}\n" + watch_yaml(ref))  # an empty one
    valid = run_cli("config", "validate", str(config))
    assert valid.returncode == 0, valid.stderr

    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"watches", "tag_states", "history", "events", "deliveries"} <= tables, tables
    again = run_cli("db", "upgrade", "--config", str(config))
    assert again.returncode == 0, again.stderr

    status = cli_json("status", "--json", "--config", str(config))
    assert status["images"] == [
        {
            "reference": ref,
            "status": None,
            "digest": None,
            "reason": None,
            "last_checked": None,
            "last_changed": None,
            "source": "config",
            "places": [],
        }
    ]


# --- 8. graceful stop


def test_sigterm_drains_checks_in_flight(
    db_url: str,
    service: Service,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("drain")
    ref = f"{registry.host}/{repo}:v1"
    image = pusher.push_image(repo, "v1", seed="drain")
    with hung_server() as hung:
        stuck = f"{hung.host}/slow/app:v1"
        config = (
            f"database: {db_url}\n"
            + FAST
            + f"registries:\n  '{hung.host}': {{timeout: 3s}}\n"
            + f"watch:\n  - image: {ref}\n  - image: {stuck}\n"
        )
        svc = service(config)
        wait_image(svc, ref, present_with(image.digest), "present")
        wait_for(lambda: hung.connections >= 1, timeout=5, message="a check hangs")
        took = svc.stop()
    log = svc.log_text()
    assert took < 8, f"stop took {took:.1f}s\n{svc.log_tail()}"
    draining = [line for line in log.splitlines() if "draining" in line]
    assert draining, svc.log_tail()
    assert "draining 0 " not in draining[-1], f"no check was in flight\n{svc.log_tail()}"
    assert log.rstrip().endswith("regmon stopped"), svc.log_tail()

    # Drained, not cancelled: the check in flight finished (its 3 s budget ran out)
    # and its result was written before the database closed.
    status = cli_json("status", "--json", "--config", str(svc.config_path))
    rows = {row["reference"]: row for row in status["images"]}
    assert rows[ref]["status"] == "present"
    assert rows[stuck]["status"] == "error", (
        f"the check in flight at SIGTERM was not recorded: {rows[stuck]}\n{svc.log_tail()}"
    )
    assert rows[stuck]["reason"] == "timeout", rows
    assert "Traceback" not in log, svc.log_tail()
