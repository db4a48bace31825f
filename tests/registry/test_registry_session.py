"""The registry session: one concurrency gate per registry, kept across clients and
resized on reload, held by a check before its budget and free for its own requests."""

from __future__ import annotations

import asyncio

import pytest
from support.slow import SlowRegistry

from monitor.checker import check_reference, client_from_config
from monitor.domain import Status
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient, RegistrySettings
from monitor.registry.session import Gate, RegistrySlots


def test_a_reload_that_changes_the_limit_resizes_the_one_gate() -> None:
    """Checks of the old client still in flight and checks of the new one (a reload
    from max_concurrency 3 to 2) share one gate: never more than 3 at once, and
    once the old ones are done, never more than 2. Two semaphores allowed 5."""
    with SlowRegistry(0.2) as server:

        async def main() -> list[Status]:
            slots = RegistrySlots()
            old_settings = RegistrySettings(max_concurrency=3)
            new_settings = RegistrySettings(max_concurrency=2)
            old = RegistryClient(settings_for=lambda host: old_settings, slots=slots)
            new = RegistryClient(settings_for=lambda host: new_settings, slots=slots)
            refs = [parse_reference(f"{server.host}/team/app:v{i}") for i in range(6)]
            first = [asyncio.create_task(check_reference(old, r)) for r in refs]
            while server.peak < 3:
                await asyncio.sleep(0.01)
            second = [asyncio.create_task(check_reference(new, r)) for r in refs]
            results = await asyncio.gather(*first, *second)
            await old.aclose()
            await new.aclose()
            gate = slots.gate(refs[0].api_host, 2)
            assert (gate.limit, gate.in_use) == (2, 0)
            return [r.status for r in results]

        assert asyncio.run(main()) == [Status.PRESENT] * 12
        assert server.peak == 3
        assert server.count("HEAD") == 12


def test_a_check_holding_its_registrys_only_slot_still_sends_its_requests() -> None:
    """max_concurrency 1: the CLI holds the slot before the budget starts; the check's
    requests pass the same gate without queueing behind their own check."""
    with SlowRegistry(0.0) as server:

        async def main() -> list[Status]:
            settings = RegistrySettings(max_concurrency=1, timeout=5)
            async with RegistryClient(settings_for=lambda host: settings) as client:

                async def one(i: int) -> Status:
                    ref = parse_reference(f"{server.host}/team/app:v{i}")
                    async with client.slot(ref):
                        return (await check_reference(client, ref, budget=5)).status

                return list(await asyncio.gather(*(one(i) for i in range(4))))

        assert asyncio.run(main()) == [Status.PRESENT] * 4
        assert server.peak == 1


def test_client_from_config_uses_the_slots_it_is_given() -> None:
    with SlowRegistry(0.0) as server:

        async def main() -> tuple[int, int]:
            slots = RegistrySlots()
            ref = parse_reference(f"{server.host}/team/app:v1")
            async with client_from_config(None, slots=slots) as client:
                async with client.slot(ref):
                    gate = slots.gate(ref.api_host, 8)
                    held = gate.in_use
                    assert (await check_reference(client, ref)).status is Status.PRESENT
            return held, gate.in_use

        assert asyncio.run(main()) == (1, 0)


def test_gate_shrinks_after_its_holders_and_grows_at_once() -> None:
    async def main() -> list[str]:
        gate = Gate(2)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with gate.hold():
                order.append(name)
                await release.wait()

        first = [asyncio.create_task(hold(n)) for n in ("a", "b", "c", "d")]
        await asyncio.sleep(0)
        assert (order, gate.in_use) == (["a", "b"], 2)
        gate.resize(3)  # grows: c gets in at once
        await asyncio.sleep(0)
        assert order == ["a", "b", "c"]
        gate.resize(1)  # shrinks: nobody new until fewer than 1 hold it
        release.set()
        await asyncio.gather(*first)
        assert gate.in_use == 0
        return order

    assert asyncio.run(main()) == ["a", "b", "c", "d"]


def test_a_waiter_cancelled_after_it_was_granted_hands_the_slot_on() -> None:
    async def main() -> int:
        gate = Gate(1)
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        third = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release()  # grants the slot to waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(third, 1)  # the slot went on, not lost
        return gate.in_use

    assert asyncio.run(main()) == 1
