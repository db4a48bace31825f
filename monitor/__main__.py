"""``python -m monitor`` and the ``regmon`` console script: the command line as a process
of its own (the one place that knows the process ends when the command does)."""

from __future__ import annotations

import gc

__all__ = ["run"]


def run() -> None:
    # No cyclic garbage collection while the command line and its command import and set
    # up: each full collection rescanned every module imported so far (~20 M of the
    # ~700 M instructions of a single `regmon check`). A one-shot command builds little
    # garbage with cycles; what runs long turns the collector back on once it is set up
    # (`regmon run` once started, `check` of many references, `wait` after its first
    # check).
    gc.disable()
    from monitor.cli import main

    try:
        main()  # click's standalone mode: ends in SystemExit with the command's code
    finally:
        # The interpreter's collections at exit scan every object still alive (the
        # imports above all): ~47 M instructions, ~20 ms. Frozen, they are skipped and
        # go with the process; the rest of a normal exit stays (atexit, threads
        # joined, stdout and stderr flushed, files closed by reference counting).
        gc.freeze()


if __name__ == "__main__":
    run()
