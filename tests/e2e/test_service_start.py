"""`regmon run` refuses bad start conditions with one line and exit code 2.

SQLite only: each is refused before any store is opened (a taken port), or is about a
SQLite path or an unknown dialect; a PostgreSQL server that does not answer is waited
for instead (tests/e2e/test_database_outages.py).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.faults import free_port


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "regmon.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'regmon.db'}\nlisten: 127.0.0.1:{port}\nwatch: []\n"
        )
        proc = run(config)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"regmon: listen 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "regmon.db").exists()  # refused before touching the database


@pytest.mark.parametrize(
    ("database", "named"),
    [
        ("sqlite:////proc/no-such-dir/regmon.db", "/proc/no-such-dir"),
        ("nosuchdialect://x", "nosuchdialect"),
    ],
)
def test_a_database_that_cannot_be_opened_is_a_one_line_error(
    tmp_path: Path, database: str, named: str
) -> None:
    # A database server that does not answer is waited for instead (test_database_outages).
    config = tmp_path / "regmon.yaml"
    config.write_text(f'database: "{database}"\nlisten: 127.0.0.1:{free_port()}\nwatch: []\n')
    proc = run(config)
    assert proc.returncode in (2, 3), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert named in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_does_not_create_a_missing_database(tmp_path: Path) -> None:
    config = tmp_path / "regmon.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'typo' / 'regmon.db'}\nwatch: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "does not exist yet" in proc.stderr
    assert not (tmp_path / "typo").exists()
