"""``regmon run`` pauses the cyclic garbage collector while start-up builds what it keeps
(issue 15: at 50,000 watches each full collection on the way rescanned it all, ~40 % of
the start's CPU), and collects again once the service is up, with that data frozen."""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path

import pytest
from support.faults import free_port

from monitor.runtime import startup
from monitor.service import run_service


def test_the_collector_waits_for_the_start_and_then_skips_what_it_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "regmon.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'regmon.db'}\n"
        f"listen: 127.0.0.1:{free_port()}\n"
        "defaults: {interval: 1h, jitter: 0%}\n"
        "watch:\n  - image: 127.0.0.1:9/collector/app:v1\n"
    )
    monkeypatch.setattr("monitor.logs.setup_logging", lambda *_args: None)
    seen: list[tuple[str, bool, int]] = []
    settle = startup.settle_collector

    def settled_then_stopped() -> None:
        seen.append(("up", gc.isenabled(), gc.get_freeze_count()))
        settle()
        seen.append(("settled", gc.isenabled(), gc.get_freeze_count()))
        os.kill(os.getpid(), signal.SIGTERM)  # the service's own handler: a clean stop

    monkeypatch.setattr(startup, "settle_collector", settled_then_stopped)
    frozen = gc.get_freeze_count()
    try:
        run_service(str(config))
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen[0] == ("up", False, frozen)
    assert seen[1][:2] == ("settled", True) and seen[1][2] > frozen
    assert len(seen) == 2
