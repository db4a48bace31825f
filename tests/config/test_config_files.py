"""Config files on a real machine: paths beside the config, REGMON_CONFIG, files named
by the config checked at load, docker config.json warnings, hostile YAML through the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import certifi
import pytest
from support.records import prepared
from support.registry import RegistryServer

from monitor.config import load_config, parse_config
from monitor.domain import Status
from monitor.errors import ConfigError
from monitor.records import Evaluation, TagState
from monitor.store.engine import make_engine
from monitor.store.repository import record_evaluations

DIGEST = "sha256:" + "d" * 64


def regmon(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real command line from ``cwd``, with no docker config and no REGMON_CONFIG
    unless ``env`` sets them."""
    full_env = {**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test", **(env or {})}
    full_env.pop("DOCKER_AUTH_CONFIG", None)
    if "REGMON_CONFIG" not in (env or {}):
        full_env.pop("REGMON_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------- relative paths


@pytest.mark.parametrize(
    ("written", "resolved"),
    [
        ("sqlite:///regmon.db", "sqlite:///{folder}/regmon.db"),
        ("sqlite:///data/regmon.db", "sqlite:///{folder}/data/regmon.db"),
        (
            "sqlite+pysqlite:///regmon.db?timeout=5",
            "sqlite+pysqlite:///{folder}/regmon.db?timeout=5",
        ),
        ("sqlite:///~/regmon.db", "sqlite:///{home}/regmon.db"),
        ("sqlite:////var/lib/regmon/regmon.db", "sqlite:////var/lib/regmon/regmon.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///file:mem?mode=memory&uri=true", "sqlite:///file:mem?mode=memory&uri=true"),
        ("postgresql+psycopg://u:p@db/regmon", "postgresql+psycopg://u:p@db/regmon"),
    ],
)
def test_database_url_resolves_against_the_config_folder(
    tmp_path: Path, written: str, resolved: str
) -> None:
    path = tmp_path / "regmon.yaml"
    path.write_text(f"database: '{written}'\n")
    expected = resolved.format(folder=tmp_path, home=Path.home())
    assert load_config(path).database == expected


def test_folder_with_url_characters_survives_sqlalchemy(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    folder = tmp_path / "a 100% ?odd"
    folder.mkdir()
    (folder / "regmon.yaml").write_text("database: sqlite:///regmon.db\n")
    url = make_url(load_config(folder / "regmon.yaml").database)
    assert url.database == f"{folder}/regmon.db"


def test_file_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "registry").write_text("pass\n")
    (tmp_path / "secrets" / "hook").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    (tmp_path / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    path = tmp_path / "regmon.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            docker_config: docker/config.json
            registries:
              r.example.com:
                username: ci
                password_file: secrets/registry
                ca_file: ./ca.pem
              s.example.com: {ca_file: ~/nowhere-regmon-test.pem}
            webhooks:
              - {name: ops, url: "https://h.example/", secret_file: secrets/hook}
            """
        )
    )
    # ~ is the home folder, never the config's: refused as missing, named as expanded.
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    home_ca = Path.home() / "nowhere-regmon-test.pem"
    assert str(caught.value) == (
        f"{path}: registries['s.example.com'].ca_file: cannot read {home_ca}: no such file"
    )

    path.write_text(path.read_text().replace("~/nowhere-regmon-test.pem", str(tmp_path / "ca.pem")))
    config = load_config(path)
    assert config.docker_config == str(tmp_path / "docker" / "config.json")
    registry = config.registry_for("r.example.com")
    assert registry.password_file == str(tmp_path / "secrets" / "registry")
    assert registry.ca_file == str(tmp_path / "ca.pem")
    assert registry.resolved_password() == "pass"
    assert config.registry_for("s.example.com").ca_file == str(tmp_path / "ca.pem")
    assert config.webhooks[0].secret_file == str(tmp_path / "secrets" / "hook")

    # From a relative config path and another cwd: the same folder.
    monkeypatch.chdir(tmp_path / "secrets")
    assert load_config("../regmon.yaml").docker_config == str(tmp_path / "docker" / "config.json")


def test_a_database_left_in_the_working_directory_is_pointed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "regmon.yaml"
    path.write_text("database: sqlite:///regmon.db\n")
    monkeypatch.chdir(tmp_path)
    load_config("config/regmon.yaml")
    assert caplog.records == []  # no older database: nothing to say

    (tmp_path / "regmon.db").write_bytes(b"")
    load_config("config/regmon.yaml")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"config/regmon.yaml: database {tmp_path}/config/regmon.db does not exist, but "
            f"{tmp_path}/regmon.db does: relative paths now resolve against the config "
            f"file's folder; move the database, or write database: sqlite:///{tmp_path}/regmon.db",
        )
    ]
    caplog.clear()
    (tmp_path / "config" / "regmon.db").write_bytes(b"")
    load_config("config/regmon.yaml")
    assert caplog.records == []


def test_text_without_a_folder_keeps_paths_as_written() -> None:
    config = parse_config("database: sqlite:///regmon.db\ndocker_config: d/config.json\n")
    assert config.database == "sqlite:///regmon.db"
    assert config.docker_config == "d/config.json"


def test_status_from_another_cwd_reads_the_database_beside_the_config(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    elsewhere = tmp_path / "elsewhere"
    srv.mkdir()
    elsewhere.mkdir()
    config = srv / "regmon.yaml"
    config.write_text("database: sqlite:///regmon.db\nwatch:\n  - image: nginx:1.27\n")

    upgraded = regmon("db", "upgrade", "--config", str(config), cwd=elsewhere)
    assert (upgraded.returncode, upgraded.stderr) == (0, "")
    assert (srv / "regmon.db").is_file()
    assert not (elsewhere / "regmon.db").exists()

    engine = make_engine(f"sqlite:///{srv / 'regmon.db'}")
    try:
        at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        state = TagState(
            image="docker.io/library/nginx:1.27",
            status=Status.PRESENT,
            digest=DIGEST,
            first_seen=at,
            last_checked=at,
            last_changed=at,
        )
        record_evaluations(engine, prepared([Evaluation(state)], lambda _event: {}))
    finally:
        engine.dispose()

    for cwd, env, args in [
        (Path("/"), None, ["--config", str(config)]),
        (elsewhere, {"REGMON_CONFIG": str(config)}, []),
    ]:
        shown = regmon("status", *args, cwd=cwd, env=env)
        assert (shown.returncode, shown.stderr) == (0, "")
        assert shown.stdout.split() == ["present", "docker.io/library/nginx:1.27", DIGEST]
    assert not (elsewhere / "regmon.db").exists()


# --------------------------------------------------------------------------- REGMON_CONFIG


@pytest.mark.parametrize(
    "command",
    [
        ["check", "localhost:1/a:b"],
        ["wait", "localhost:1/a:b", "--timeout", "1s"],
        ["run"],
        ["status"],
        ["history", "nginx:1.27"],
        ["db", "upgrade"],
        ["webhook", "test", "ops"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_regmon_config_names_the_config_of_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    named = tmp_path / "from-env.yaml"
    named.write_text("colour: blue\n")
    proc = regmon(*command, cwd=tmp_path, env={"REGMON_CONFIG": str(named)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"regmon: {named}: colour: unknown key\n"

    # --config wins over the environment.
    given = tmp_path / "given.yaml"
    given.write_text("retention: forever\n")
    proc = regmon(*command, "--config", str(given), cwd=tmp_path, env={"REGMON_CONFIG": str(named)})
    assert proc.stderr.startswith(f"regmon: {given}: retention: expected a duration"), proc.stderr


# --------------------------------------------------------------------------- files at load


def _files_config(tmp_path: Path, **files: str) -> Path:
    path = tmp_path / "regmon.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            registries:
              r.example.com: {{username: ci, password_file: '{files.get("password", "")}'}}
              c.example.com: {{ca_file: '{files.get("ca", "")}'}}
            webhooks:
              - {{name: ops, url: "https://h.example/", secret_file: '{files.get("secret", "")}'}}
            """
        )
    )
    return path


@pytest.mark.parametrize(
    ("kind", "make", "why"),
    [
        ("missing", lambda p: None, "no such file"),
        ("a directory", lambda p: p.mkdir(), "is a directory"),
        ("a FIFO", lambda p: os.mkfifo(p), "not a regular file"),
        ("empty", lambda p: p.write_text(" \n"), "{path} is empty"),
        ("too big", lambda p: p.write_bytes(b"x" * (64 * 1024 + 1)), "larger than 64 KiB"),
        ("not UTF-8", lambda p: p.write_bytes(b"\xff\xfe"), "not UTF-8 text"),
    ],
)
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("password", "registries['r.example.com'].password_file"),
        ("secret", "webhooks[0].secret_file"),
    ],
)
def test_unreadable_secret_file_is_refused_at_load_naming_key_and_file(
    tmp_path: Path, kind: str, make: object, why: str, key: str, where: str
) -> None:
    target = tmp_path / "the-secret"
    make(target)  # type: ignore[operator]
    path = _files_config(tmp_path, **{key: "the-secret"})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    detail = why.format(path=target) if "{path}" in why else f"cannot read {target}: {why}"
    assert str(caught.value) == f"{path}: {where}: {detail}"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such file"),
        (b"hello\n", "not a PEM certificate bundle (NO_CERTIFICATE_OR_CRL_FOUND)"),
    ],
)
def test_unusable_ca_file_is_refused_at_load(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    path = _files_config(tmp_path, ca="ca.pem")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value) == f"{path}: registries['c.example.com'].ca_file: cannot read {ca}: {why}"
    )


def test_config_validate_refuses_a_missing_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "regmon.yaml"
    path.write_text(
        "webhooks:\n  - {name: ops, url: 'https://h.example/', secret_file: hook.secret}\n"
    )
    proc = regmon("config", "validate", str(path), cwd=Path("/"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"regmon: {path}: webhooks[0].secret_file: cannot read {tmp_path / 'hook.secret'}: "
        "no such file\n"
    )
    (tmp_path / "hook.secret").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    proc = regmon("config", "validate", str(path), cwd=Path("/"))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"{path}: ok (0 watches, 1 webhooks)\n"


# --------------------------------------------------------------------------- docker config.json


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        (
            '{"auths": {',
            "docker config {file}: not valid JSON (line 1, column 12); "
            "registries are checked without its credentials",
        ),
        (
            '["auths"]',
            "docker config {file}: not a JSON object; "
            "registries are checked without its credentials",
        ),
        (
            b"\xff\xfe{}",
            "docker config {file}: cannot read (not UTF-8 text); "
            "registries are checked without its credentials",
        ),
        (
            '{"credsStore": "regmon-absent"}',
            "credential helper docker-credential-regmon-absent (credsStore in {file}) "
            "is not on PATH; registries it serves are checked without credentials",
        ),
        (
            '{"credHelpers": {"HOST": "regmon-gone"}}',
            "credential helper docker-credential-regmon-gone "
            "(credHelpers['HOST'] in {file}) is not on PATH; registries it serves are checked "
            "without credentials",
        ),
    ],
    ids=["not JSON", "not an object", "not UTF-8", "credsStore missing", "credHelpers missing"],
)
def test_broken_docker_config_is_one_warning_and_check_still_answers(
    tmp_path: Path, registry_basic: RegistryServer, content: str | bytes, warning: str
) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    file = docker / "config.json"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content.replace("HOST", registry_basic.host))
    expected = warning.format(file=file).replace("HOST", registry_basic.host)
    refs = [f"{registry_basic.host}/team/one:v1", f"{registry_basic.host}/team/two:v1"]

    proc = regmon("check", *refs, cwd=tmp_path, env={"DOCKER_CONFIG": str(docker)})
    assert proc.returncode == 1
    assert [line.split() for line in proc.stdout.splitlines()] == [
        ["denied", ref, "no", "credentials"] for ref in refs
    ]
    assert proc.stderr == expected + "\n"

    config = tmp_path / "regmon.yaml"
    config.write_text(f"docker_config: {file}\n")
    proc = regmon("config", "validate", str(config), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, f"{config}: ok (0 watches, 0 webhooks)\n")
    assert proc.stderr == expected + "\n"


def test_missing_docker_config_is_silent(tmp_path: Path, registry_basic: RegistryServer) -> None:
    ref = f"{registry_basic.host}/team/one:v1"
    proc = regmon("check", ref, cwd=tmp_path, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert (proc.returncode, proc.stderr) == (1, "")


# --------------------------------------------------------------------------- hostile YAML

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
# Measured peak RSS of `regmon config validate` on a small valid config: ~45 MiB.
PEAK_KIB = 150 * 1024


def _bombs(tmp_path: Path) -> list[tuple[str, str]]:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (8 * 1024 * 1024) + b"\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    files = {
        "nested.yaml": "watch: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "nested-maps.yaml": "watch: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
        "laughs.yaml": BILLION_LAUGHS,
        "nul.yaml": "watch:\n  - image: nginx\x00\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    folder = re.escape(str(tmp_path))
    return [
        (
            str(tmp_path / "nested.yaml"),
            rf"{folder}/nested.yaml: line 1, column \d+: invalid YAML: .*",
        ),
        (
            str(tmp_path / "nested-maps.yaml"),
            rf"{folder}/nested-maps.yaml: line 1, column \d+: "
            "nested deeper than 100 levels, refused",
        ),
        (
            str(tmp_path / "laughs.yaml"),
            rf"{folder}/laughs.yaml: line 7, column \d+: "
            "more than 2,000,000 values once aliases are expanded, refused",
        ),
        (
            str(tmp_path / "nul.yaml"),
            rf"{folder}/nul.yaml: line 2, column 17: invalid YAML: unacceptable character #x0000",
        ),
        ("/dev/zero", r"/dev/zero: not a regular file"),
        (str(fifo), rf"{folder}/fifo.yaml: not a regular file"),
        (str(big), rf"{folder}/big.yaml: larger than 8 MiB, refused"),
    ]


# Run in a child that reports its child's peak RSS: the test process's own children
# (registries, earlier commands) would blur RUSAGE_CHILDREN.
_MEASURE = """\
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=30)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(done.returncode, peak)
sys.stdout.write(done.stderr)
"""


@pytest.mark.parametrize("command", [["config", "validate"], ["run", "--config"]])
def test_yaml_bombs_are_one_line_in_bounded_time_and_memory(
    tmp_path: Path, command: list[str]
) -> None:
    for path, message in _bombs(tmp_path):
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, sys.executable, "-m", "monitor", *command, path],
            capture_output=True,
            text=True,
            timeout=40,
            check=True,
            cwd=tmp_path,
            env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
        )
        status, rest = done.stdout.split("\n", 1)
        code, peak_kib = status.split()
        assert code == "2", (path, rest)
        assert re.fullmatch(f"regmon: {message}\n", rest), (path, rest)
        assert int(peak_kib) < PEAK_KIB, (path, peak_kib)
