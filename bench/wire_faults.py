"""Registry wire faults, end to end, on both transports: one row per scenario.

    .venv/bin/python bench/wire_faults.py [--only NAME]

Each scenario of the fault table in tests/registry/test_registry_faults.py (refused, DNS,
TLS, reset, hang, malformed answers) runs ``check_reference`` once per transport
in a fresh child process, against the same loopback fault servers the tests use
(DNS through ``resolve_names``, so no resolver is asked). The table shows the
outcome, the requests the server saw, the wall time and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def one(name: str, transport: str) -> dict[str, object]:
    import test_registry_faults as table
    from support.faults import resolve_names

    row = table.TABLE[name]
    names: dict[str, str] = {}
    started = time.monotonic()
    with resolve_names(names):
        server = row.server() if row.server else None
        if server is None:
            host = table._host(row, None, names)
            result = table.run(f"{host}/team/app:v1", table.TRANSPORTS[transport])
            requests = 0
        else:
            with server:
                host = table._host(row, server, names)
                result = table.run(f"{host}/team/app:v1", table.TRANSPORTS[transport])
                requests = len(server.requests)
    return {
        "scenario": name,
        "transport": transport,
        "outcome": f"{result.status}/{result.reason}" if result.reason else str(result.status),
        "detail": (result.detail or "").removeprefix(host + ": ").removeprefix(host + " "),
        "requests": requests,
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "expected": str(row.reason),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "TRANSPORT"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(*args.child)))
        return
    import test_registry_faults as table

    rows = []
    for name in table.TABLE:
        if args.only and name != args.only:
            continue
        for transport in table.TRANSPORTS:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, transport],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                rows.append(
                    {
                        "scenario": name,
                        "transport": transport,
                        "outcome": "CRASH",
                        "detail": proc.stderr.strip().splitlines()[-1:],
                        "requests": "",
                        "seconds": "",
                        "peak_rss_mib": "",
                        "expected": "",
                    }
                )
                continue
            rows.append(json.loads(proc.stdout))
    print("| scenario | transport | outcome | detail | requests | s | peak RSS MiB |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        mark = "" if str(r["outcome"]).endswith(str(r["expected"])) else " (!)"
        print(
            f"| {r['scenario']} | {r['transport']} | {r['outcome']}{mark} | {r['detail']} |"
            f" {r['requests']} | {r['seconds']} | {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
