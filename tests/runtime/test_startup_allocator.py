"""``regmon run`` keeps glibc's thresholds for giving freed memory back at their starting
values (issue 15: after the first ``/metrics`` scrape glibc's raised mmap threshold kept
every later scrape's buffers in the process, +32 MiB at 10,000 watches).

Each case runs in a fresh interpreter: the thresholds are per process and cannot be read
back, so the test looks at what they do. An 8 MiB block is mmap'd and freed (by default
glibc now raises its threshold to 8 MiB), then a 7 MiB block is written and freed: from
the heap by default (it stays resident), mmap'd again with the thresholds kept (it goes).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from monitor.runtime import startup

_PROBE = textwrap.dedent(
    """
    import sys

    def rss_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    if sys.argv[1] == "kept":
        from monitor.runtime.startup import return_large_blocks

        return_large_blocks()
    first = bytearray(8 << 20)
    del first
    before = rss_kib()
    second = bytearray(b"x" * (7 << 20))
    del second
    print(rss_kib() - before)
    """
)


def _kept_after_free_kib(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    return int(done.stdout)


def test_a_large_block_freed_after_a_larger_one_goes_back_to_the_system() -> None:
    assert _kept_after_free_kib("default") >= 6 << 10  # glibc's own behaviour: kept
    assert _kept_after_free_kib("kept") < 1 << 10


def test_the_operators_malloc_settings_are_left_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[object] = []
    monkeypatch.setattr(ctypes, "CDLL", lambda name: opened.append(name))
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.setenv(name, "65536")
        startup.return_large_blocks()
        monkeypatch.delenv(name)
    assert opened == []
