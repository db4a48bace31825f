"""`regmon check` / `regmon wait` end to end: the real CLI against real registries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import lines, no_traceback, regmon
from support.faults import (
    CountingProxy,
    free_port,
    garbage_server,
    hung_server,
    status_server,
)
from support.images import ImagePusher
from support.registry import RegistryServer
from support.token_issuer import TokenIssuer

SIX_TYPES = 6


# --- present / missing on the plain registry --------------------------------------------


def test_present_missing_tag_missing_repository(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("cli")
    image = pusher.push_image(repo, "v1", "oci")
    proc = regmon(
        "check",
        f"{registry.host}/{repo}:v1",
        f"{registry.host}/{repo}:nope",
        f"{registry.host}/{repo}-absent:v1",
    )
    no_traceback(proc)
    assert proc.returncode == 1
    assert lines(proc) == [
        ["present", f"{registry.host}/{repo}:v1", image.digest],
        ["missing", f"{registry.host}/{repo}:nope", "manifest", "unknown"],
        ["missing", f"{registry.host}/{repo}-absent:v1", "manifest", "unknown"],
    ]


@pytest.mark.parametrize("kind", ["oci", "docker", "oci-index", "docker-list"])
def test_every_manifest_kind_matches_skopeo(
    kind: str, registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo(kind)
    if kind in ("oci", "docker"):
        pushed_digest = pusher.push_image(repo, "t", kind).digest  # type: ignore[arg-type]
    else:
        pushed_digest = pusher.push_index(repo, "t", kind).digest  # type: ignore[arg-type]
    proc = regmon("check", "--json", f"{registry.host}/{repo}:t")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "present"
    assert doc["digest"] == pushed_digest

    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: run the test command (it installs skopeo)"
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:t"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == doc["digest"]


def test_json_fields(registry: RegistryServer, pusher: ImagePusher, unique_repo) -> None:
    repo = unique_repo("json")
    image = pusher.push_image(repo, "v1", "docker")
    proc = regmon("check", "--json", f"{registry.host}/{repo}:v1", f"{registry.host}/{repo}:x")
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1
    assert [doc.pop("duration_ms") > 0 for doc in docs] == [True, True]
    assert docs == [
        {
            "reference": f"{registry.host}/{repo}:v1",
            "status": "present",
            "digest": image.digest,
            "media_type": "application/vnd.docker.distribution.manifest.v2+json",
            "platforms": {},
            "reason": None,
            "http_status": 200,
            "detail": None,
            "pinned": False,
            "violation": None,
            "places": [],
        },
        {
            "reference": f"{registry.host}/{repo}:x",
            "status": "missing",
            "digest": None,
            "media_type": None,
            "platforms": {},
            "reason": "manifest unknown",
            "http_status": 404,
            "detail": None,
            "pinned": False,
            "violation": None,
            "places": [],
        },
    ]


def test_digest_references(registry: RegistryServer, pusher: ImagePusher, unique_repo) -> None:
    repo = unique_repo("digest")
    image = pusher.push_image(repo, "v1", "oci")
    wrong = "sha256:" + "0" * 64
    proc = regmon(
        "check",
        f"{registry.host}/{repo}@{image.digest}",
        f"{registry.host}/{repo}:v1@{image.digest}",
        f"{registry.host}/{repo}@{wrong}",
    )
    assert lines(proc) == [
        ["present", f"{registry.host}/{repo}@{image.digest}", image.digest],
        ["present", f"{registry.host}/{repo}:v1@{image.digest}", image.digest],
        ["missing", f"{registry.host}/{repo}@{wrong}", "manifest", "unknown"],
    ]
    assert proc.returncode == 1


@pytest.mark.parametrize("kind", ["oci-index", "docker-list"])
def test_multi_arch_platforms(
    kind: str, registry: RegistryServer, pusher: ImagePusher, unique_repo
) -> None:
    repo = unique_repo("multi")
    index = pusher.push_index(repo, "v1", kind, attestation=(kind == "oci-index"))  # type: ignore[arg-type]
    ref = f"{registry.host}/{repo}:v1"
    proc = regmon("check", "--json", "--platform", "linux/arm64", "--platform", "linux/arm/v7", ref)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["digest"] == index.digest
    assert doc["platforms"] == {
        "linux/arm64": index.children["linux/arm64"],
        "linux/arm/v7": index.children["linux/arm/v7"],
    }
    absent = regmon("check", "--platform", "linux/s390x", ref)
    assert absent.returncode == 1
    assert lines(absent)[0][:2] == ["missing", ref]
    assert "linux/s390x" in absent.stdout


# --- token auth, Docker Hub style ------------------------------------------------------


@pytest.fixture
def private_image(registry_token: RegistryServer, token_pusher: ImagePusher, unique_repo):
    repo = unique_repo("private")
    return repo, token_pusher.push_image(repo, "v1", "oci")


def test_token_registry_anonymous(
    registry_token: RegistryServer, token_pusher: ImagePusher, unique_repo, private_image
) -> None:
    public = unique_repo("public")
    pub = token_pusher.push_image(public, "v1", "oci")
    private, _ = private_image
    host = registry_token.host
    proc = regmon(
        "check",
        f"{host}/{public}:v1",
        f"{host}/{private}:v1",
        f"{host}/{unique_repo('team')}:v1",
    )
    no_traceback(proc)
    assert lines(proc) == [
        ["present", f"{host}/{public}:v1", pub.digest],
        ["denied", f"{host}/{private}:v1", "insufficient_scope"],
        ["denied", f"{host}/{lines(proc)[2][1].split('/', 1)[1]}", "insufficient_scope"],
    ]
    assert proc.returncode == 1


def test_token_registry_docker_config_auths(
    registry_token: RegistryServer, private_image, tmp_path: Path
) -> None:
    repo, image = private_image
    auth = base64.b64encode(b"ci:s3cret").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {registry_token.host: {"auth": auth}}})
    )
    proc = regmon("check", f"{registry_token.host}/{repo}:v1", env={"DOCKER_CONFIG": str(tmp_path)})
    assert lines(proc) == [["present", f"{registry_token.host}/{repo}:v1", image.digest]]
    assert proc.returncode == 0


def test_token_registry_credential_helper(
    registry_token: RegistryServer, private_image, tmp_path: Path
) -> None:
    repo, image = private_image
    bindir = tmp_path / "bin"
    bindir.mkdir()
    asked = tmp_path / "asked"
    helper = bindir / "docker-credential-regmontest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\ncat > {asked}\n'
        'echo \'{"ServerURL":"x","Username":"ci","Secret":"s3cret"}\'\n'
    )
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(
        json.dumps({"credHelpers": {registry_token.host: "regmontest"}, "auths": {}})
    )
    env = {"DOCKER_CONFIG": str(tmp_path), "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = regmon("check", f"{registry_token.host}/{repo}:v1", env=env)
    assert lines(proc) == [["present", f"{registry_token.host}/{repo}:v1", image.digest]]
    assert asked.read_text() == registry_token.host


def test_token_requests_are_shared(
    registry_token: RegistryServer,
    token_pusher: ImagePusher,
    token_issuer: TokenIssuer,
    unique_repo,
    tmp_path: Path,
) -> None:
    """20 tags of one repository: one challenge, one token, one HEAD per tag."""
    repo = unique_repo("public")
    for i in range(20):
        token_pusher.push_image(repo, f"v{i}", "oci", seed=i)
    with CountingProxy(registry_token.host) as proxy:
        token_issuer.reset()
        refs = [f"{proxy.host}/{repo}:v{i}" for i in range(20)]
        proc = regmon("check", *refs)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [row[0] for row in lines(proc)] == ["present"] * 20
        # SPEC §2 "about one HTTP request per check": the challenge, then one HEAD each.
        assert len(token_issuer.requests) == 1
        assert proxy.counts == {
            ("GET", "/v2/"): 1,
            **{("HEAD", f"/v2/{repo}/manifests/v{i}"): 1 for i in range(20)},
        }


# --- basic auth ------------------------------------------------------------------------


def _basic_config(tmp_path: Path, host: str, password: str) -> Path:
    secret = tmp_path / "registry-password"
    secret.write_text(password + "\n")
    config = tmp_path / "regmon.yaml"
    config.write_text(f'registries:\n  "{host}":\n    username: ci\n    password_file: {secret}\n')
    return config


def test_basic_auth_password_file(
    registry_basic: RegistryServer, basic_pusher: ImagePusher, unique_repo, tmp_path: Path
) -> None:
    repo = unique_repo("basic")
    image = basic_pusher.push_image(repo, "v1", "oci")
    ref = f"{registry_basic.host}/{repo}:v1"
    config = _basic_config(tmp_path, registry_basic.host, "s3cret")
    proc = regmon("check", "--config", str(config), ref)
    assert lines(proc) == [["present", ref, image.digest]]
    anonymous = regmon("check", ref)
    assert lines(anonymous) == [["denied", ref, "no", "credentials"]]
    assert anonymous.returncode == 1


def test_wrong_password_is_auth_failed_and_never_printed(
    registry_basic: RegistryServer, registry_token: RegistryServer, unique_repo, tmp_path: Path
) -> None:
    secret = "Wr0ngPassw0rd-xyzzy"
    for reg in (registry_basic, registry_token):
        ref = f"{reg.host}/{unique_repo('private')}:v1"
        config = _basic_config(tmp_path, reg.host, secret)
        for args in (["check"], ["check", "--json"]):
            proc = regmon(*args, "--config", str(config), ref)
            no_traceback(proc)
            assert proc.returncode == 3
            assert "auth_failed" in proc.stdout
            assert secret not in proc.stdout + proc.stderr
            assert base64.b64encode(f"ci:{secret}".encode()).decode() not in proc.stderr


# --- faults ----------------------------------------------------------------------------


def test_connection_refused_is_unreachable() -> None:
    ref = f"127.0.0.1:{free_port()}/team/app:v1"
    proc = regmon("check", ref)
    assert lines(proc) == [["error", ref, "unreachable"]]
    assert proc.returncode == 3
    no_traceback(proc)


def test_503_is_server_error() -> None:
    with status_server(503) as server:
        ref = f"{server.host}/team/app:v1"
        proc = regmon("check", ref)
        assert server.count() >= 2  # retried within the budget
    assert lines(proc) == [["error", ref, "server_error"]]
    assert proc.returncode == 3


def test_429_honours_retry_after_then_rate_limited() -> None:
    with status_server(429, {"Retry-After": "1"}) as server:
        ref = f"{server.host}/team/app:v1"
        proc = regmon("check", "--timeout", "2.5s", ref)
        times = list(server.requests)
    assert lines(proc) == [["error", ref, "rate_limited"]]
    assert proc.returncode == 3
    # At most one request per Retry-After second, never a hammering loop.
    assert 2 <= len(times) <= 4, len(times)


def test_hung_server_times_out_within_budget() -> None:
    with hung_server() as server:
        ref = f"{server.host}/team/app:v1"
        started = time.monotonic()
        proc = regmon("check", "--timeout", "2s", ref)
        elapsed = time.monotonic() - started
    assert lines(proc) == [["error", ref, "timeout"]]
    assert proc.returncode == 3
    assert elapsed < 6, elapsed


def test_garbage_200_is_protocol_error() -> None:
    with garbage_server() as server:
        ref = f"{server.host}/team/app:v1"
        proc = regmon("check", ref)
    assert lines(proc) == [["error", ref, "protocol"]]
    assert proc.returncode == 3


def test_exit_code_precedence(registry: RegistryServer, pusher: ImagePusher, unique_repo) -> None:
    repo = unique_repo("mixed")
    pusher.push_image(repo, "v1", "oci")
    present, missing = f"{registry.host}/{repo}:v1", f"{registry.host}/{repo}:nope"
    error = f"127.0.0.1:{free_port()}/team/app:v1"
    assert regmon("check", present).returncode == 0
    assert regmon("check", present, missing).returncode == 1
    assert regmon("check", missing, error, present).returncode == 3


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        ("docker.io/Ubuntu", "library/Ubuntu"),
        ("ubuntu:.hidden", ".hidden"),
        ("foo@md5:" + "f" * 32, "md5"),
        ("https://gcr.io/foo", "https://"),
        ("", "empty"),
    ],
)
def test_invalid_reference_is_usage_error_before_any_request(reference: str, named: str) -> None:
    with status_server(200) as server:
        proc = regmon("check", f"{server.host}/team/app:v1", reference)
        assert server.count() == 0
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert named in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize(
    "args",
    [["--timeout", "soon"], ["--platform", "linux"], ["--config", "/nonexistent/regmon.yaml"]],
)
def test_bad_flags_are_usage_errors(args: list[str]) -> None:
    proc = regmon("check", *args, "alpine")
    assert proc.returncode == 2
    no_traceback(proc)


# --- wait --------------------------------------------------------------------------------


def test_wait_until_present(registry: RegistryServer, unique_repo) -> None:
    repo = unique_repo("wait")
    ref = f"{registry.host}/{repo}:v1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "wait", ref, "--timeout", "30s", "--interval", "0.2s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
    )
    try:
        with ImagePusher(registry.url) as late:
            image = late.push_image(repo, "v1", "oci")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.split() == ["present", ref, image.digest]


def test_wait_times_out_with_last_status(registry: RegistryServer, unique_repo) -> None:
    missing = regmon("wait", f"{registry.host}/{unique_repo('wait')}:v1", "--timeout", "1s",
                     "--interval", "1s")  # fmt: skip
    assert missing.returncode == 1
    assert missing.stdout.split()[0] == "missing"
    # Not a terminal: no progress lines, only how it ended.
    assert missing.stderr == "timed out after 1s: last status missing (manifest unknown)\n"
    failing = regmon("wait", f"127.0.0.1:{free_port()}/a:b", "--timeout", "1000ms")
    assert failing.returncode == 3
    status, _, reason = failing.stdout.split()  # unreachable, or timeout on a busy machine
    assert status == "error"
    assert failing.stderr.splitlines()[-1] == f"timed out after 1s: last status error ({reason})"


def test_wait_shows_progress_on_a_terminal(registry: RegistryServer, unique_repo) -> None:
    import pty

    ref = f"{registry.host}/{unique_repo('wait')}:v1"
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", "wait", ref, "--timeout", "5s", "--interval", "2s"],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    err = b"".join(chunks).decode().replace("\r\n", "\n")
    assert proc.returncode == 1
    *progress, last = err.splitlines()
    assert progress[0] == f"waiting for {ref}: missing (manifest unknown), next try in 2s"
    # One line per poll; the last pause is what is left of the timeout, in whole seconds.
    assert len(progress) in (2, 3)
    for line in progress[1:]:
        assert line in (
            f"waiting for {ref}: missing (manifest unknown), next try in 2s",
            f"waiting for {ref}: missing (manifest unknown), next try in 1s",
        )
    assert last == "timed out after 5s: last status missing (manifest unknown)"


def test_wait_gives_the_check_at_its_deadline_time_to_answer() -> None:
    """A registry answering in 0.3 s, --timeout 3s --interval 2s: the last pause ends at
    the deadline, and the check made there gets one interval, not the ~0.4 s that was
    left (the old budget: what was left, at least 0.1 s; every such wait ended `error
    (timeout)`, exit 3; CI saw it on the pty test above whenever a loaded machine took
    0.1 s for one local check)."""
    import time as clock

    from support.slow import SlowRegistry

    with SlowRegistry(0.3, missing=True) as server:
        ref = f"{server.host}/team/app:v1"
        began = clock.monotonic()
        proc = regmon("wait", ref, "--timeout", "3s", "--interval", "2s")
        took = clock.monotonic() - began
    no_traceback(proc)
    assert (proc.returncode, lines(proc)) == (1, [["missing", ref, "manifest", "unknown"]])
    assert proc.stderr == "timed out after 3s: last status missing (manifest unknown)\n"
    assert took < 3 + 2 + 5, took  # the deadline, the last check's interval, process setup


# --- the check path stays light -----------------------------------------------------------


def test_check_imports_nothing_heavy(registry: RegistryServer, pusher, unique_repo) -> None:
    repo = unique_repo("light")
    pusher.push_image(repo, "v1", "oci")
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "monitor",
            "check",
            f"{registry.host}/{repo}:v1",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
    )
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("sqlalchemy", "apscheduler", "starlette", "uvicorn", "prometheus_client",
                  "pydantic", "alembic", "aiohttp", "httpx_aiohttp", "yaml",
                  # httpcore on asyncio needs anyio: ~160 M instructions of imports.
                  "httpcore", "anyio",
                  # the service's records: ~40 M instructions to build.
                  "monitor.records",
                  # platform selection: only a check with --platform (~12 M).
                  "monitor.registry.platforms", "monitor.registry.evidence"):  # fmt: skip
        assert heavy not in imported, f"regmon check imports {heavy}"


# The process entry as the console script calls it; at exit (atexit runs after the
# entry is done), what the collector was left doing.
_ENTRY = """
import atexit, gc, sys
def report():
    print(f"collector enabled={gc.isenabled()} frozen={gc.get_freeze_count() > 0}",
          file=sys.stderr)
atexit.register(report)
sys.argv = ["regmon", *sys.argv[1:]]
from monitor.__main__ import run
run()
"""


@pytest.mark.parametrize("count", [1, 9], ids=["one", "many"])
def test_the_process_ends_with_what_it_built_frozen(
    count: int, registry: RegistryServer, pusher: ImagePusher, unique_repo
) -> None:
    """The interpreter's collections at exit skip what the command built (frozen), and
    the output, the exit code and atexit are those of a normal exit. A check of one
    reference never collects; one of many collects again once set up."""
    repo = unique_repo("entry")
    image = pusher.push_image(repo, "v1", "oci")
    refs = [f"{registry.host}/{repo}:v1"] + [
        f"{registry.host}/{repo}:no{n}" for n in range(1, count)
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _ENTRY, "check", "--format", "junit", *refs],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
    )
    no_traceback(proc)
    assert proc.returncode == (0 if count == 1 else 1)
    assert proc.stdout.startswith("<?xml") and proc.stdout.endswith("</testsuites>\n")
    assert proc.stdout.count("<testcase ") == count
    assert proc.stdout.count("<failure ") == count - 1
    assert image.digest in proc.stdout
    enabled = count > 1
    assert proc.stderr.splitlines()[-1] == f"collector enabled={enabled} frozen=True"


def test_many_references_queue_before_their_timeout_starts() -> None:
    """64 references to a registry that answers in 0.5 s, 8 slots, --timeout 2.5s: the
    last of 8 waves waits 3.5 s for a slot, and must not time out while it waits.

    Each HEAD has 2 s to spare (1.5 s was too little on CI's 2 loaded cores: a check
    that times out frees its slot while the server still sleeps, so the server saw 9).
    """
    from support.slow import SlowRegistry

    with SlowRegistry(0.5) as server:
        refs = [f"{server.host}/team/app:v{i}" for i in range(64)]
        proc = regmon("check", "--timeout", "2.5s", *refs)
        peak = server.peak
    assert [row[0] for row in lines(proc)] == ["present"] * 64, proc.stdout
    assert proc.returncode == 0, proc.stdout
    assert peak == 8  # reached the limit, never beyond it


def test_first_checks_budget_does_not_pay_for_setup_or_discovery() -> None:
    """9 references, a registry taking 1.7 s for GET /v2/ and 1.7 s per HEAD, --timeout
    3s: the budget measures each reference's HEAD; process setup (imports, TLS
    contexts, transports) comes before it and the one-time discovery has a budget
    of its own. The old code charged setup + discovery + HEAD (> 3.4 s) to the first
    wave of 8, which timed out whatever the machine's load; the fixed code has
    1.3 s to spare on each (0.8 s was too little on CI's loaded cores, and a 150-300 ms
    budget on a 1 ms registry flaked under the full suite's load)."""
    import time as clock

    from support.faults import Reply
    from support.slow import SlowRegistry

    class SlowDiscovery(SlowRegistry):
        def respond(self, request):  # type: ignore[no-untyped-def]
            if request.path == "/v2/":
                clock.sleep(1.7)
                return Reply(200)
            return super().respond(request)

    with SlowDiscovery(1.7) as server:
        refs = [f"{server.host}/team/app:v{i}" for i in range(9)]
        proc = regmon("check", "--timeout", "3s", *refs)
    assert [row[0] for row in lines(proc)] == ["present"] * 9, proc.stdout
    assert proc.returncode == 0
