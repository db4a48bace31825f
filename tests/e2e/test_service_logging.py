"""What `regmon run` logs, read from the real service's log at its levels."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from support.faults import free_port
from support.images import ImagePusher
from support.registry import RegistryServer
from support.service import RegmonFactory, RegmonProcess, run_cli
from support.wait import wait_for

LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) +(?P<logger>[\w.]+): (?P<message>.*)$")


def log_lines(svc: RegmonProcess) -> list[tuple[str, str, str]]:
    """(level, logger, message) of every log line of the service."""
    found = []
    for line in svc.log_text().splitlines():
        match = LINE.match(line)
        if match:
            found.append((match["level"], match["logger"], match["message"]))
    return found


def events_of(svc: RegmonProcess, ref: str) -> list[dict[str, Any]]:
    return svc.events(image=ref)


def test_the_log_says_what_a_user_can_act_on(
    regmon_factory: RegmonFactory,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: Callable[..., str],
    db_url: str,
) -> None:
    repo = unique_repo("logs")
    ref = f"{registry.host}/{repo}:v1"
    down = f"127.0.0.1:{free_port()}/team/api:v2"  # nothing listens: refused
    svc = regmon_factory(
        f"database: {db_url}\n"
        "log: {level: debug}\n"
        "defaults: {interval: 1s, jitter: 0%, missing_after: 1, failing_after: 2}\n"
        f"registries: {{'{down.split('/')[0]}': {{timeout: 1s}}}}\n"
        f"watch:\n  - image: {ref}\n  - image: {down}\n"
    )

    def has(kind: str, image: str) -> bool:
        return any(event["type"] == kind for event in events_of(svc, image))

    wait_for(lambda: has("tag.missing", ref) and has("check.failing", down), timeout=15)
    first = pusher.push_image(repo, "v1")
    wait_for(lambda: has("tag.created", ref), timeout=15)
    second = pusher.push_image(repo, "v1")
    wait_for(lambda: has("tag.changed", ref), timeout=15)
    failed = svc.image(down)
    assert failed["reason"] == "unreachable" and "connection refused" in failed["detail"]
    svc.stop()

    lines = log_lines(svc)
    ours = [(level, message) for level, logger, message in lines if logger == "regmon.checks"]

    def notable(image: str) -> list[tuple[str, str]]:
        return [
            (level, message)
            for level, message in ours
            if level != "DEBUG" and re.search(rf" {re.escape(image)}[: ]", message)
        ]

    assert notable(ref) == [
        ("WARNING", f"tag.missing {ref}: missing manifest unknown"),
        ("INFO", f"tag.created {ref}: present at {first.digest} (first seen)"),
        ("WARNING", f"tag.changed {ref}: {first.digest} -> {second.digest}"),
    ]
    refused = f"unreachable: {failed['detail']}"
    assert notable(down) == [
        ("WARNING", f"check {down} failed: {refused}; check.failing after 2 consecutive errors"),
        ("WARNING", f"check.failing {down}: 2 consecutive errors, last {refused}"),
    ]
    debug = [message.rsplit(" (", 1)[0] for level, message in ours if level == "DEBUG"]
    assert f"check {ref}: missing manifest unknown" in debug
    assert f"check {ref}: present {second.digest}" in debug
    assert f"check {down}: error {refused}" in debug
    # level: debug is regmon's own: no library line below WARNING
    libraries = [
        (level, logger, message)
        for level, logger, message in lines
        if not logger.startswith(("regmon", "monitor"))
    ]
    assert [entry for entry in libraries if entry[0] in ("DEBUG", "INFO")] == []


def test_history_of_a_watched_tag_whose_checks_all_failed_says_so(
    regmon_factory: RegmonFactory,
    db_url: str,
) -> None:
    down = f"127.0.0.1:{free_port()}/team/api:v2"
    never = "127.0.0.1:9/team/never:checked"  # in no config: the old message
    svc = regmon_factory(
        f"database: {db_url}\n"
        "defaults: {interval: 1s, jitter: 0%, failing_after: 10}\n"
        f"registries: {{'{down.split('/')[0]}': {{timeout: 1s}}}}\n"
        f"watch:\n  - image: {down}\n"
    )
    wait_for(lambda: svc.image(down)["consecutive_errors"] >= 2, timeout=15)
    svc.stop()
    config = str(svc.config_path)
    (state,) = json.loads(run_cli("status", "--json", "--config", config).stdout)["images"]
    assert state["status"] == "error" and state["reason"] in ("unreachable", "timeout")
    proc = run_cli("history", down, "--config", config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{down}: watched, every check so far failed (error/{state['reason']})\n"
    other = run_cli("history", never, "--config", config)
    assert other.stdout == f"{never}: no history (not watched yet, or never checked)\n"
