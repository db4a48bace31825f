"""`regmon run` with ``sources:``: the fixture deployment's images become watches that
follow the files, against the real registries.

The fixture tree (tests/data/deploy) is copied with ``localhost:5000`` (no auth) and
``localhost:5001`` (token auth) replaced by the test registries; the service reads
``files: [deploy]``, so its watches are what ``regmon check -f deploy`` reports
(tests/data/check-golden/check.txt). Edits are followed by the service's file watcher
(one look a second): waits are conditions on the API and the log, never sleeps.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.images import ImagePusher
from support.paths import DATA
from support.registry import RegistryServer
from support.service import RegmonProcess, run_cli
from support.wait import wait_for

from monitor.store.engine import make_engine

PRESENT = [
    "shop/api:2.1.0", "shop/web:1.4", "shop/worker:2.1.0", "library/postgres:16",
    "library/golang:1.22-alpine", "tools/busybox:1.36", "base/distroless-static:nonroot",
    "library/python:3.12-slim", "proxy/envoy:v1.29.1", "library/redis:7.2",
    "tools/wait-for:1.2", "shop/report:2.1.0", "shop/migrate:2.0.9", "ops/node-agent:0.8",
]  # fmt: skip
SOURCE = "files:deploy"
CONFIG = (
    "defaults: {interval: 1s, jitter: 0%, missing_after: 1}\n"
    "watch:\n  - image: localhost:5000/shop/report:2.1.0\n    interval: 2s\n"
    "sources:\n  - files: [deploy]\n"
)


def golden() -> list[tuple[str, list[str]]]:
    """(reference, places) as ``check -f deploy`` reports the fixture tree."""
    rows = []
    for line in (DATA / "check-golden" / "check.txt").read_text().splitlines():
        _, reference, rest = line.split(maxsplit=2)
        rows.append((reference, rest.split("  ")[-1].split(", ")))
    return rows


class Deployment:
    def __init__(self, root: Path, hosts: dict[str, str]) -> None:
        self.root = root
        self.hosts = hosts
        shutil.copytree(DATA / "deploy", root / "deploy")
        for path in (root / "deploy").rglob("*"):
            if path.is_file():
                path.write_text(self.real(path.read_text()))

    def real(self, text: str) -> str:
        for fixture, real in self.hosts.items():
            text = text.replace(fixture, real)
        return text

    def fixture(self, text: str) -> str:
        for fixture, real in self.hosts.items():
            text = text.replace(real, fixture)
        return text

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / "deploy" / name
        text = path.read_text()
        assert self.real(old) in text, name
        self.write(path, text.replace(self.real(old), self.real(new)))

    def write(self, path: Path, text: str) -> None:
        """Replace ``path`` in one step: the service's watcher, looking once a second, may
        look between write_text's truncation and its write, and read an empty file."""
        staged = self.root / f".{path.name}.staged"  # outside deploy/: never a source file
        staged.write_text(text)
        os.replace(staged, path)


@pytest.fixture
def deployment(
    tmp_path: Path,
    registry: RegistryServer,
    registry_token: RegistryServer,
    pusher: ImagePusher,
    token_pusher: ImagePusher,
) -> Deployment:
    for ref in PRESENT:
        repo, tag = ref.rsplit(":", 1)
        pusher.push_image(repo, tag, "oci", seed=ref.replace("library/", ""))
    token_pusher.push_image("acme/billing", "3.0", "oci", seed="acme/billing:3.0")
    return Deployment(
        tmp_path, {"localhost:5000": registry.host, "localhost:5001": registry_token.host}
    )


@pytest.fixture
def started(deployment: Deployment, db_url: str) -> Iterator[RegmonProcess]:
    svc = RegmonProcess(f"database: {db_url}\n" + deployment.real(CONFIG), deployment.root)
    yield svc
    svc.close()


def listing(svc: RegmonProcess, deployment: Deployment) -> list[tuple[str, str, list[str]]]:
    """(reference, source, places) of ``GET /api/v1/images``, in its order, fixture hosts."""
    images = svc.json("/api/v1/images")["images"]
    return [(deployment.fixture(i["reference"]), i["source"], i["places"]) for i in images]


def status_of(svc: RegmonProcess, deployment: Deployment) -> dict[str, Any]:
    return {deployment.fixture(ref): image["status"] for ref, image in svc.images().items()}


def messages(svc: RegmonProcess, deployment: Deployment, needle: str) -> list[str]:
    """The log lines holding ``needle``, without their time, fixture hosts."""
    lines = [deployment.fixture(line) for line in svc.log_text().splitlines()]
    return [line.split(" ", 1)[1] for line in lines if needle in line]


REPORT = "localhost:5000/shop/report:2.1.0"
OLD_MIGRATE = "localhost:5000/shop/migrate:2.1.0"
NEW_MIGRATE = "localhost:5000/shop/migrate:2.0.9"


def test_the_deployment_is_watched_and_followed_as_its_files_change(
    started: RegmonProcess, deployment: Deployment
) -> None:
    svc = started
    expected = [(REPORT, "config", [])] + [
        (ref, SOURCE, places) for ref, places in golden() if ref != REPORT
    ]
    assert listing(svc, deployment) == expected
    # Every image checked: the statuses check -f reports, the private one denied.
    want = {
        "localhost:5000/shop/api:2.1.0": "present",
        "localhost:5000/tools/debug:latest": "missing",
        "localhost:5001/acme/billing:3.0": "denied",
        OLD_MIGRATE: "missing",
        REPORT: "present",
    }
    wait_for(
        lambda: want.items() <= status_of(svc, deployment).items(),
        timeout=20,
        message=f"first checks\n{svc.log_tail()}",
    )
    image = svc.image(deployment.real("localhost:5000/tools/wait-for:1.2"))
    assert (image["source"], image["places"]) == (
        SOURCE,
        ["deploy/k8s/jobs.yaml:17", "deploy/k8s/jobs.yaml:36"],
    )
    assert (image["interval_seconds"], image["cron"]) == (1.0, None)

    # One image replaced by another in a file: the new one is watched, the old one not.
    deployment.edit("k8s/jobs.yaml", "shop/migrate:2.1.0", "shop/migrate:2.0.9")
    after = [
        (NEW_MIGRATE, SOURCE, ["deploy/k8s/jobs.yaml:39"]) if row[0] == OLD_MIGRATE else row
        for row in expected
    ]
    wait_for(
        lambda: listing(svc, deployment) == after,
        timeout=10,
        message=f"the edit followed\n{svc.log_tail()}",
    )
    # The watches are stored before the line is logged: the API can show them first.
    reloaded = "source files:deploy reloaded"
    wait_for(
        lambda: (
            messages(svc, deployment, reloaded)
            == ["INFO    regmon: source files:deploy reloaded: 17 watches (1 added, 1 removed)"]
        ),
        message=f"one reload logged\n{svc.log_tail()}",
    )
    wait_for(
        lambda: status_of(svc, deployment).get(NEW_MIGRATE) == "present",
        timeout=10,
        message=f"the new image checked\n{svc.log_tail()}",
    )
    # The old one is no longer watched, its state and history kept.
    engine = make_engine(svc.database)
    try:
        with engine.connect() as conn:

            def rows(sql: str, image: str) -> list[tuple[Any, ...]]:
                return [tuple(row) for row in conn.execute(sa.text(sql), {"image": image})]

            old = deployment.real(OLD_MIGRATE)
            watch = "select active, source from watches where image = :image"
            assert rows(watch, old) == [(False, SOURCE)]
            state = "select status from tag_states where image = :image"
            assert rows(state, old) == [("missing",)]
            # Named by both, stored under the one that wins: the file's edits never retire it.
            assert rows(watch, deployment.real(REPORT)) == [(True, "config")]
            assert rows("select count(*) from history where image = :image", old) == [(1,)]
    finally:
        engine.dispose()

    # A file that no longer parses: one line, once; the last good watches stay.
    jobs = deployment.root / "deploy" / "k8s" / "jobs.yaml"
    good = jobs.read_text()
    deployment.write(jobs, good.replace("  jobTemplate:\n", "  jobTemplate: [\n", 1))
    broken = wait_for(
        lambda: messages(svc, deployment, "keeping its last good watches"),
        timeout=10,
        message=f"the broken file told\n{svc.log_tail()}",
    )
    checked = svc.image(deployment.real(REPORT))["last_checked"]
    # Two more checks of a 2 s watch: the watcher has looked at the files again since.
    wait_for(
        lambda: (
            svc.image(deployment.real(REPORT))["last_checked"] > checked
            and svc.image(deployment.real(REPORT))["consecutive_misses"] == 0
        ),
        timeout=10,
    )
    assert (
        messages(svc, deployment, "keeping its last good watches")
        == broken
        == [
            f"ERROR   regmon: source files:deploy: {jobs}: line 11, column 19: invalid YAML: "
            "while parsing a flow sequence; did not find expected ',' or ']'; "
            "keeping its last good watches"
        ]
    )
    assert listing(svc, deployment) == after

    # Mended, with an image added: followed again.
    deployment.write(jobs, good.replace("tools/wait-for:1.2\n", "tools/wait-for:1.3\n", 1))
    wait_for(
        lambda: deployment.real("localhost:5000/tools/wait-for:1.3") in svc.images(),
        timeout=10,
        message=f"the mended file followed\n{svc.log_tail()}",
    )
    places = svc.image(deployment.real("localhost:5000/tools/wait-for:1.2"))["places"]
    assert places == ["deploy/k8s/jobs.yaml:36"]
    wait_for(
        lambda: (
            messages(svc, deployment, reloaded)[1:]
            == ["INFO    regmon: source files:deploy reloaded: 18 watches (1 added, 0 removed)"]
        ),
        message=f"the second reload logged\n{svc.log_tail()}",
    )

    # regmon status names the source and the places too.
    proc = run_cli("status", "--config", str(svc.config_path))
    assert proc.returncode == 0, proc.stderr
    text = deployment.fixture(proc.stdout)
    assert (
        "from files:deploy: deploy/compose/compose.yaml:23, deploy/k8s/kustomize-list.yaml:27\n"
        in text
    ), text
    lines = text.splitlines()
    assert re.fullmatch(rf"present  {re.escape(REPORT)}  sha256:[0-9a-f]{{64}}", lines[0])
    assert lines[1:3] == [  # a watch: entry has no places line; a source's image has
        "missing  localhost:5000/shop/web:1.5-rc1  manifest unknown",
        "         from files:deploy: deploy/compose/compose.override.yml:4",
    ]
