"""monitor.threads.in_thread: a cancelled caller lets its thread's store work end first."""

from __future__ import annotations

import asyncio
import threading

import pytest

from monitor.threads import in_thread


def test_a_cancelled_caller_ends_only_after_its_thread() -> None:
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def work() -> int:  # stands for a write holding a database connection
        started.set()
        release.wait(10)
        ended.set()
        return 1

    async def main() -> bool:
        task = asyncio.create_task(in_thread(work))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        # asyncio.to_thread alone would end the task at once, the thread still running.
        done, _ = await asyncio.wait({task}, timeout=0.3)
        assert not done
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ended.is_set()

    assert asyncio.run(main()) is True


def test_the_result_and_the_error_are_the_threads() -> None:
    def fail() -> None:
        raise ValueError("no")

    async def main() -> int:
        with pytest.raises(ValueError, match="no"):
            await in_thread(fail)
        return await in_thread(int, "42")

    assert asyncio.run(main()) == 42
