"""`regmon check -f` end to end: the fixture deployment against the real registries.

The fixture files name ``localhost:5000`` (no auth) and ``localhost:5001`` (token auth);
each test copies them with those hosts replaced by the test registries' and maps the
hosts back in the output, so the golden documents read as the files do. Every image is
pushed with a seed, so digests are the same on every run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from support.cli import no_traceback, regmon
from support.faults import free_port
from support.images import ImagePusher
from support.paths import DATA, ROOT
from support.registry import RegistryServer

DEPLOY = DATA / "deploy"
GOLDEN = DATA / "check-golden"

PRESENT = [
    "shop/api:2.1.0", "shop/web:1.4", "shop/worker:2.1.0", "library/postgres:16",
    "library/golang:1.22-alpine", "tools/busybox:1.36", "base/distroless-static:nonroot",
    "library/python:3.12-slim", "proxy/envoy:v1.29.1", "library/redis:7.2",
    "tools/wait-for:1.2", "shop/report:2.1.0", "shop/migrate:2.0.9", "ops/node-agent:0.8",
]  # fmt: skip
# postgres:16 as pushed with its seed: the fixture compose file pins it
PG_DIGEST = "sha256:3c42b3f0ca16e76a50a84b91fcc9b298f369871ed0ae90103a8cf91913a22360"
PRIVATE = ["acme/billing:3.0"]  # on the token registry; anonymous pulls are denied


def push(pusher: ImagePusher, refs: list[str]) -> dict[str, str]:
    digests = {}
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        digests[ref] = pusher.push_image(repo, tag, "oci", seed=ref.replace("library/", "")).digest
    return digests


class Deployment:
    """The fixture tree, copied with the registry hosts swapped in."""

    def __init__(self, root: Path, hosts: dict[str, str]) -> None:
        self.root = root
        self.hosts = hosts  # fixture host -> test host
        shutil.copytree(DEPLOY, root / "deploy")
        for path in (root / "deploy").rglob("*"):
            if path.is_file():
                text = path.read_text()
                for fixture, real in hosts.items():
                    text = text.replace(fixture, real)
                path.write_text(text)

    def check(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        for fixture, real in self.hosts.items():
            args = tuple(arg.replace(fixture, real) for arg in args)
        proc = regmon_in(self.root, *args, stdin=stdin)
        for fixture, real in self.hosts.items():
            proc.stdout = proc.stdout.replace(real, fixture)
            proc.stderr = proc.stderr.replace(real, fixture)
        return proc


def regmon_in(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    env = {**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"}
    env.pop("DOCKER_AUTH_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=60,
        check=False,
    )


@pytest.fixture
def deployment(
    tmp_path: Path,
    registry: RegistryServer,
    registry_token: RegistryServer,
    pusher: ImagePusher,
    token_pusher: ImagePusher,
) -> Deployment:
    push(pusher, PRESENT)
    push(token_pusher, PRIVATE)
    return Deployment(
        tmp_path, {"localhost:5000": registry.host, "localhost:5001": registry_token.host}
    )


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_text_output_every_image_once_with_every_place(deployment: Deployment) -> None:
    proc = deployment.check("check", "-f", "deploy")
    no_traceback(proc)
    assert proc.returncode == 1  # missing and denied, no error
    assert proc.stdout == golden("check.txt")
    assert proc.stderr == ""


def test_json_output_has_places(deployment: Deployment) -> None:
    proc = deployment.check("check", "--json", "-f", "deploy/k8s/jobs.yaml")
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(d["reference"], d["status"], d["pinned"], d["violation"]) for d in docs] == [
        ("localhost:5000/tools/wait-for:1.2", "present", False, None),
        ("localhost:5000/shop/report:2.1.0", "present", False, None),
        ("localhost:5000/shop/migrate:2.1.0", "missing", False, None),
    ]
    assert docs[0]["places"] == [
        {"file": "deploy/k8s/jobs.yaml", "line": 17, "object": "CronJob/shop/nightly-report",
         "container": "wait-for-db"},
        {"file": "deploy/k8s/jobs.yaml", "line": 36, "object": "Job/shop/db-migrate-2-1-0",
         "container": "wait-for-db"},
    ]  # fmt: skip
    assert proc.returncode == 1
    same = deployment.check("check", "--format", "json", "-f", "deploy/k8s/jobs.yaml")
    assert [json.loads(line)["reference"] for line in same.stdout.splitlines()] == [
        d["reference"] for d in docs
    ]


def test_github_annotations(deployment: Deployment) -> None:
    proc = deployment.check("check", "--format", "github", "-f", "deploy")
    assert proc.returncode == 1
    assert proc.stdout == golden("check.github.txt")


def _normalized_times(xml: str) -> str:
    return re.sub(r'time="[0-9.]+"', 'time="T"', xml)


def test_junit_report_parses_with_junitparser(deployment: Deployment, tmp_path: Path) -> None:
    proc = deployment.check("check", "--format", "junit", "-f", "deploy")
    assert proc.returncode == 1
    assert _normalized_times(proc.stdout) == golden("check.junit.xml")
    report = tmp_path / "report.xml"
    report.write_text(proc.stdout)
    xml = JUnitXml.fromfile(str(report))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (17, 5, 0, 0)
    failed = {
        case.name: [(type(r).__name__, r.type, r.message) for r in case.result]
        for case in suite
        if case.result
    }
    assert failed == {
        "localhost:5000/shop/web:1.5-rc1": [
            ("Failure", "missing", "localhost:5000/shop/web:1.5-rc1 is missing: manifest unknown")
        ],
        "localhost:5000/tools/debug:latest": [
            ("Failure", "missing", "localhost:5000/tools/debug:latest is missing: manifest unknown")
        ],
        "localhost:5001/acme/billing:3.0": [
            ("Failure", "denied", "localhost:5001/acme/billing:3.0 is denied: insufficient_scope")
        ],
        "localhost:5000/shop/migrate:2.1.0": [
            ("Failure", "missing", "localhost:5000/shop/migrate:2.1.0 is missing: manifest unknown")
        ],
        "localhost:5000/ops/node-agent:0.9": [
            ("Failure", "missing", "localhost:5000/ops/node-agent:0.9 is missing: manifest unknown")
        ],
    }
    assert all(isinstance(r, Failure) for case in suite for r in case.result)


def test_require_digest(deployment: Deployment) -> None:
    compose = "deploy/compose/compose.yaml"
    proc = deployment.check("check", "--require-digest", "-f", compose, "--format", "github")
    assert proc.returncode == 1
    annotations = [line for line in proc.stdout.splitlines() if line.startswith("::")]
    assert (
        annotations[0]
        == (
            f"::error file={compose},line=11,title=image not pinned::"
            "localhost:5000/shop/api:2.1.0 is not pinned by digest; "
            "pin it as localhost:5000/shop/api:2.1.0@sha256:"
        )
        + annotations[0].rsplit("@sha256:", 1)[1]
    )
    assert sum("title=image not pinned" in line for line in annotations) == 3  # api, web, worker
    assert "postgres" not in " ".join(annotations)  # pinned
    pinned = [line for line in deployment.check("check", "--require-digest", "-f", compose)
              .stdout.splitlines() if "postgres" in line]  # fmt: skip
    assert pinned[0].split() == [
        "present", f"localhost:5000/library/postgres:16@{PG_DIGEST}",
        PG_DIGEST, f"{compose}:35",
    ]  # fmt: skip
    only_pinned = deployment.check(
        "check", "--require-digest",
        f"localhost:5000/library/postgres:16@{PG_DIGEST}",
    )  # fmt: skip
    assert only_pinned.returncode == 0, only_pinned.stdout


def test_require_digest_present_but_unpinned_is_exit_1_and_error_stays_3(
    deployment: Deployment,
) -> None:
    unpinned = deployment.check("check", "--require-digest", "localhost:5000/shop/api:2.1.0")
    assert unpinned.returncode == 1
    assert unpinned.stdout.split()[:2] == ["present", "localhost:5000/shop/api:2.1.0"]
    assert unpinned.stdout.rstrip().endswith("  not pinned")
    down = f"127.0.0.1:{free_port()}/team/app:v1"
    both = deployment.check("check", "--require-digest", "localhost:5000/shop/api:2.1.0", down)
    assert both.returncode == 3


def test_kubectl_get_yaml_on_stdin(deployment: Deployment) -> None:
    """`kubectl get deploy,sts,ds,cj,job,pod -A -o yaml | regmon check -f -`."""
    text = (deployment.root / "deploy" / "k8s" / "cluster.json").read_text()
    import yaml

    as_yaml = yaml.safe_dump(json.loads(text), sort_keys=True)  # kubectl's YAML is the same object
    proc = deployment.check("check", "-f", "-", stdin=as_yaml)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert [(row[0], row[1]) for row in rows] == [
        ("present", "localhost:5000/shop/api:2.1.0"),
        ("present", "localhost:5000/tools/busybox:1.36"),
    ]
    api_lines = [
        f"<stdin>:{number}"
        for number, line in enumerate(as_yaml.splitlines(), 1)
        if line.strip().lstrip("- ").startswith("image: ") and line.endswith("/shop/api:2.1.0")
    ][:-1]  # the last is the Pod's status.containerStatuses, not a template
    assert len(api_lines) == 3
    assert rows[0][3:] == [f"{where}," for where in api_lines[:-1]] + api_lines[-1:]


def test_kubectl_get_all_kinds_on_stdin(deployment: Deployment) -> None:
    """A saved `kubectl get deploy,sts,ds,cj,job,pod -A -o yaml` piped in."""
    text = (DATA / "kubectl-get-all.yaml").read_text()
    proc = deployment.check(
        "check", "-f", "-", stdin=text.replace("localhost:5000", deployment.hosts["localhost:5000"])
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[:2] + line.split("  ")[-1:] for line in proc.stdout.splitlines()] == [
        ["present", "localhost:5000/shop/web:1.4", "<stdin>:31"],
        ["present", "localhost:5000/library/redis:7.2", "<stdin>:69"],
        ["present", "localhost:5000/ops/node-agent:0.8", "<stdin>:109, <stdin>:235"],
        ["present", "localhost:5000/shop/report:2.1.0", "<stdin>:148, <stdin>:200"],
        ["present", "localhost:5000/tools/wait-for:1.2", "<stdin>:156, <stdin>:208"],
    ]  # line 250 is the Pod's status.containerStatuses


def test_arguments_and_files_together_each_reference_once(deployment: Deployment) -> None:
    proc = deployment.check(
        "check", "localhost:5000/shop/report:2.1.0", "-f", "deploy/k8s/jobs.yaml",
        "-f", "deploy/docker",
    )  # fmt: skip
    refs = [line.split()[1] for line in proc.stdout.splitlines()]
    assert refs == [
        "localhost:5000/shop/report:2.1.0",
        "localhost:5000/tools/wait-for:1.2",
        "localhost:5000/shop/migrate:2.1.0",
        "localhost:5000/library/golang:1.22-alpine",
        "localhost:5000/tools/busybox:1.36",
        "localhost:5000/base/distroless-static:nonroot",
        "localhost:5000/library/python:3.12-slim",
    ]
    assert proc.stdout.splitlines()[0].endswith("  deploy/k8s/jobs.yaml:21")


@pytest.mark.parametrize(
    ("files", "content", "message"),
    [
        (["deploy/nope.yaml"], None, "regmon: deploy/nope.yaml: no such file or folder\n"),
        (["bad.yaml"], "kind: Pod\nspec: [\n", "regmon: bad.yaml: line 3, column 1: invalid "),
        (["Dockerfile"], "ARG BASE\nFROM ${BASE}\n", "regmon: Dockerfile: line 2: FROM ${BASE}: "),
        (["compose.yaml"], "services:\n  a:\n    image: Team/App\n",
         "regmon: compose.yaml: line 3: invalid image reference 'Team/App'"),
    ],
)  # fmt: skip
def test_file_errors_are_one_line_usage_errors_before_any_request(
    tmp_path: Path, files: list[str], content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / files[0]).write_text(content)
    down = f"127.0.0.1:{free_port()}/team/app:v1"  # would be exit 3 if it were checked
    args = [arg for name in files for arg in ("-f", name)]
    proc = regmon_in(tmp_path, "check", down, *args)
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(message), proc.stderr


def test_files_without_images_and_no_reference_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    (tmp_path / "values.yaml").write_text("image: {tag: 1}\n")
    proc = regmon_in(tmp_path, "check", "-f", "empty.yaml", "-f", ".")
    assert proc.returncode == 2
    assert proc.stderr == "regmon: no image found in empty.yaml, .\n"


def test_json_and_format_text_conflict() -> None:
    proc = regmon("check", "--json", "--format", "text", "alpine")
    assert proc.returncode == 2
    no_traceback(proc)


def test_no_reference_and_no_file_is_a_usage_error() -> None:
    proc = regmon("check")
    assert proc.returncode == 2
    assert proc.stderr == "regmon: give REFERENCE or -f PATH\n"


def test_check_f_imports_nothing_heavy(deployment: Deployment) -> None:
    import os
    import sys

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "monitor", "check", "-f", "deploy"],
        capture_output=True,
        text=True,
        check=False,
        cwd=deployment.root,
        env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert {"yaml", "dockerfile", "dotenv"} <= imported  # the files were read
    for heavy in ("sqlalchemy", "apscheduler", "starlette", "uvicorn", "prometheus_client",
                  "pydantic", "alembic"):  # fmt: skip
        assert heavy not in imported, f"regmon check -f imports {heavy}"
