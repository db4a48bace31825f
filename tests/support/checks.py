"""Checks of one reference through a real RegistryClient, for the registry tests.

results = run_checks(f"{server.host}/team/app:v1", 3, transport_factory=factory)
async with RegistryClient(...) as client:      # a client the test also works with
    [result] = await checks(client, ref, 1)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from monitor.checker import check_reference
from monitor.domain import CheckResult
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient

__all__ = ["checks", "run_checks"]


async def checks(
    client: RegistryClient,
    ref: str,
    count: int,
    *,
    budget: float = 5.0,
    platforms: Sequence[str] = (),
) -> list[CheckResult]:
    """``count`` checks of ``ref`` in a row on ``client``."""
    reference = parse_reference(ref)
    return [
        await check_reference(client, reference, platforms=platforms, budget=budget)
        for _ in range(count)
    ]


def run_checks(
    ref: str,
    count: int = 1,
    *,
    budget: float = 5.0,
    platforms: Sequence[str] = (),
    **client: Any,
) -> list[CheckResult]:
    """``count`` checks of ``ref`` on one ``RegistryClient(**client)``, in an event loop of
    their own; the client is closed afterwards."""

    async def main() -> list[CheckResult]:
        async with RegistryClient(**client) as registry_client:
            return await checks(registry_client, ref, count, budget=budget, platforms=platforms)

    return asyncio.run(main())
