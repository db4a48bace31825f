"""What the service keeps per watch once its checks are done (issue 15: RSS at 10,000
watches): no lock per key, one registry name and one tally per kind of state, shared;
a state holds its watch's own key string and, without platforms, the one empty map."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.config import load_config
from monitor.records import NO_PLATFORMS
from monitor.runtime.outages import registry_of
from monitor.service import Service

REFS = [f"127.0.0.1:9/memory/app{n}:v1" for n in range(3)]  # port 9: refused, at once


def test_checks_done_leave_no_lock_and_share_names_and_tallies(tmp_path: Path) -> None:
    config = tmp_path / "regmon.yaml"
    watches = "".join(f"  - image: {ref}\n" for ref in REFS)
    config.write_text(
        f"database: sqlite:///{tmp_path / 'regmon.db'}\n"
        f"defaults: {{interval: 1h, jitter: 0%}}\nwatch:\n{watches}"
    )

    async def main() -> None:
        service = Service(load_config(str(config)), config_path=str(config))
        await service.start(serve_http=False)
        try:
            states = [await service.check_now(ref) for ref in REFS]
            assert [state.status.value if state.status else None for state in states] == [
                "error"
            ] * 3
            assert service._checks._locks == {}
            watches = service.watches()
            by_key = {watch.key: watch for watch in watches}
            for state in states:
                assert state.image is by_key[state.image].key
                assert state.platforms is NO_PLATFORMS
            names = {id(registry_of(watch)) for watch in watches}
            assert len(names) == 1
            parts = service._outages._parts  # type: ignore[union-attr]
            assert len({id(part) for _, part in parts.values()}) == 1
        finally:
            await service.stop()

    asyncio.run(main())
