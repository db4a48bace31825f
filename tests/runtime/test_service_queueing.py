"""Many watches due at once: waiting for a registry slot is not the registry timing out."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.slow import SlowRegistry
from support.wait import wait_for

from monitor.config import parse_config
from monitor.domain import Status
from monitor.service import Service


def test_queued_checks_do_not_time_out(tmp_path: Path, db_url: str) -> None:
    """30 watches, 2 slots, 0.2 s per answer, 1 s timeout: about 3 s of queueing."""
    with SlowRegistry(0.2) as server:
        watches = "\n".join(f"  - image: {server.host}/team/app:v{i}" for i in range(30))
        config = parse_config(
            f"database: {db_url}\n"
            f"defaults: {{interval: 1h, jitter: 0%}}\n"
            f'registries:\n  "{server.host}": {{max_concurrency: 2, timeout: 1s}}\n'
            f"watch:\n{watches}\n"
        )

        async def main() -> dict[str, Status | None]:
            service = Service(config)
            await service.start(serve_http=False)
            try:

                def all_checked() -> dict[str, Status | None] | None:
                    states = service.states()
                    if len(states) == 30 and all(s.last_checked for s in states.values()):
                        return {key: s.status for key, s in states.items()}
                    return None

                return await asyncio.to_thread(wait_for, all_checked, 30.0)
            finally:
                await service.stop()

        statuses = asyncio.run(main())
        assert server.peak <= 2
    assert set(statuses.values()) == {Status.PRESENT}
