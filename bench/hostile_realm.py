"""Soak the body caps: hostile token endpoints and registries against the real `regmon check`.

    .venv/bin/python bench/hostile_realm.py

Starts the real registry (token mode) whose realm is a hostile issuer on 127.0.0.1,
and a fake registry that answers a gzip-bomb manifest; runs `python -m monitor check`
once per scenario and prints scenario, peak RSS of that process, and its outcome.
Reuses the test harness (tests/support), so it needs what the tests need.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.faults import LoopbackHTTPServer, RecordedRequest, Reply  # noqa: E402
from support.hostile import MIB, gzip_bomb, regmon_measured  # noqa: E402
from support.registry import RegistryServer  # noqa: E402
from test_hostile_realm import SCENARIOS, HostileIssuer  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class BombRegistry(LoopbackHTTPServer):
    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200, [], b"{}")
        headers = [("Content-Type", OCI_MANIFEST), ("Content-Encoding", "gzip")]
        return Reply(200, headers, gzip_bomb(1024 * MIB))


def main() -> None:
    rows: list[tuple[str, float, str]] = []

    def record(name: str, ref: str) -> None:
        run = regmon_measured("check", ref)
        status, _, *cause = run.stdout.split()  # "error  <ref>  auth_failed"
        outcome = " ".join([status, *cause])
        detail = run.stderr.strip().split(": ", 2)[-1] if run.stderr.strip() else ""
        rows.append((name, run.max_rss_kib / 1024, f"{outcome}  {detail}".strip()))

    with tempfile.TemporaryDirectory() as tmp, HostileIssuer() as issuer:
        with RegistryServer(Path(tmp), "token", issuer=issuer) as registry:
            for name, (reply, _) in SCENARIOS.items():
                issuer.reply = reply
                record(f"realm: {name}", f"{registry.host}/public/app:v1")
            issuer.reply = None
    with BombRegistry() as bomb:
        record("manifest: 1 GiB gzip bomb", f"{bomb.host}/team/app:v1")

    width = max(len(name) for name, _, _ in rows)
    print(f"{'scenario':<{width}}  {'peak RSS':>9}  outcome")
    for name, rss, outcome in rows:
        print(f"{name:<{width}}  {rss:6.1f} MiB  {outcome}")


if __name__ == "__main__":
    main()
