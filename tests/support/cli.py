"""Run the real command line (``python -m monitor``) as a user would, and read its answer."""

from __future__ import annotations

import os
import subprocess
import sys


def regmon(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would, with a clean docker config."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("DOCKER_CONFIG", "/nonexistent-regmon-test")
    full_env.pop("DOCKER_AUTH_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def lines(proc: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [line.split() for line in proc.stdout.splitlines() if line.strip()]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout
