"""monitor.config and monitor.durations: table tests of loading, resolving and errors."""

from __future__ import annotations

import math
from pathlib import Path

import certifi
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.paths import ROOT as REPO_ROOT

from monitor.config import (
    Config,
    RegistryConfig,
    WebhookConfig,
    default_config,
    load_config,
    parse_config,
    resolve_watches,
)
from monitor.durations import format_duration, parse_duration
from monitor.errors import ConfigError, UsageError

# SPEC §4, verbatim but for the secret and CA file paths (placeholders filled per test).
SPEC_EXAMPLE = """\
database: sqlite:///regmon.db            # any SQLAlchemy URL; PostgreSQL for HA
listen: 127.0.0.1:9725                   # HTTP: /metrics, /healthz, /readyz, /api/v1, /
api_token: ${REGMON_API_TOKEN:-}         # required for POST endpoints; empty = they are refused
log: {level: info, format: text}         # format: text | json (one object per line)
retention: 90d                           # events, deliveries and history older than this are pruned
defaults:
  interval: 5m                           # or cron: "*/15 * * * *"
  jitter: 10%                            # spread checks, never a thundering herd
  missing_after: 2                       # consecutive missing/denied checks before tag.missing
  failing_after: 3                       # consecutive errors before check.failing
docker_config: ~/.docker/config.json     # auths, credHelpers, credsStore honoured
registries:
  registry.example.com:5000:
    username: ci
    password_file: {registry_secret}     # or password: ${REG_PASSWORD}
    insecure: false                      # plain HTTP / no TLS verify
    ca_file: {ca_file}
    max_concurrency: 8
    timeout: 10s
webhooks:
  - name: ops
    url: https://hooks.example.com/regmon
    secret_file: {hook_secret}           # Standard Webhooks secret (whsec_...)
    events: [tag.missing, tag.changed, tag.restored, check.failing, check.recovered]
    format: json                         # json | slack | discord | alertmanager(later)
watch:
  - image: nginx:1.27
  - image: ghcr.io/acme/api:v2
    interval: 1m
    platforms: [linux/amd64, linux/arm64]
  - image: registry.example.com:5000/team/app:prod
    cron: "*/10 * * * *"
    webhooks: [ops]
"""

# A config that passes, for error cases that change one thing.
BASE = """\
webhooks:
  - name: ops
    url: https://hooks.example.com/regmon
watch:
  - image: nginx:1.27
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REGMON_API_TOKEN", "REG_PASSWORD", "REGMON_TEST_VAR", "REGMON_TEST_UNSET"):
        monkeypatch.delenv(name, raising=False)


def _error(text: str, source: str = "config/regmon.yaml") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source=source)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{source}: ")
    return message


# --------------------------------------------------------------------------- loading


def test_shipped_config_loads() -> None:
    config = load_config(REPO_ROOT / "config" / "regmon.yaml")
    assert config.source == str(REPO_ROOT / "config" / "regmon.yaml")
    assert config.database == f"sqlite:///{REPO_ROOT / 'config' / 'regmon.db'}"
    assert str(config.listen) == "127.0.0.1:9725"
    assert config.api_token is None
    assert config.defaults.interval == 300
    assert config.defaults.jitter == pytest.approx(0.10)
    keys = [watch.key for watch in resolve_watches(config)]
    assert "docker.io/library/alpine:3.20" in keys
    assert len(keys) == len(set(keys)) >= 3


def test_shipped_config_reads_api_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGMON_API_TOKEN", "t0ken")
    assert load_config(REPO_ROOT / "config" / "regmon.yaml").api_token == "t0ken"


def test_spec_example_loads_and_resolves(tmp_path: Path) -> None:
    registry_secret = tmp_path / "registry"
    registry_secret.write_text("s3cret-pass \n\t")
    hook_secret = tmp_path / "hook"
    hook_secret.write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    ca_file = tmp_path / "my-ca.pem"
    ca_file.write_bytes(Path(certifi.where()).read_bytes())
    path = tmp_path / "regmon.yaml"
    path.write_text(
        SPEC_EXAMPLE.replace("{registry_secret}", str(registry_secret))
        .replace("{hook_secret}", str(hook_secret))
        .replace("{ca_file}", str(ca_file))
    )

    config = load_config(path)

    assert config.source == str(path)
    assert config.database == f"sqlite:///{tmp_path / 'regmon.db'}"
    assert config.listen.host == "127.0.0.1" and config.listen.port == 9725
    assert config.api_token is None
    assert (config.log.level, config.log.format) == ("info", "text")
    assert config.retention == 90 * 86400
    assert config.docker_config == str(Path("~/.docker/config.json").expanduser())

    registry = config.registry_for("registry.example.com:5000")
    assert registry.username == "ci"
    assert registry.resolved_password() == "s3cret-pass"
    assert registry.ca_file == str(ca_file)
    assert (registry.max_concurrency, registry.timeout, registry.insecure) == (8, 10.0, False)
    assert config.registry_for("REGISTRY.example.com:5000") is registry
    assert config.registry_for("ghcr.io") == RegistryConfig()

    (hook,) = config.webhooks
    assert hook.name == "ops" and hook.format == "json"
    assert hook.events == (
        "tag.missing",
        "tag.changed",
        "tag.restored",
        "check.failing",
        "check.recovered",
    )
    assert hook.resolved_secret() == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert config.webhook("ops") is hook

    nginx, api, app = resolve_watches(config)
    assert (nginx.key, nginx.interval, nginx.cron, nginx.jitter) == (
        "docker.io/library/nginx:1.27",
        300.0,
        None,
        pytest.approx(0.10),
    )
    assert (nginx.missing_after, nginx.failing_after, nginx.webhooks) == (2, 3, ("ops",))
    assert (api.key, api.interval, api.platforms) == (
        "ghcr.io/acme/api:v2",
        60.0,
        ("linux/amd64", "linux/arm64"),
    )
    assert (app.key, app.interval, app.cron, app.webhooks) == (
        "registry.example.com:5000/team/app:prod",
        None,
        "*/10 * * * *",
        ("ops",),
    )
    assert app.image.host_key == "registry.example.com:5000"
    assert config.registry_for(app.image.host_key) is registry


def test_default_config() -> None:
    config = default_config()
    assert config == Config()
    assert config.source is None
    assert resolve_watches(config) == ()
    assert config.database == "sqlite:///regmon.db"
    assert str(config.listen) == "127.0.0.1:9725"
    assert config.retention == 90 * 86400
    assert config.ha.lease == 15.0  # SPEC §11
    assert config.registry_for("docker.io") == RegistryConfig()
    assert config.registry_for("docker.io").manifest_method == "head"


def test_empty_document_is_default_config() -> None:
    config = parse_config("# nothing yet\n", source="empty.yaml")
    assert config.source == "empty.yaml"
    assert config.model_dump() == default_config().model_dump()


def test_config_is_frozen() -> None:
    config = parse_config(BASE)
    with pytest.raises(ValueError, match="frozen"):
        config.database = "sqlite://"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.registries["x"] = RegistryConfig()  # type: ignore[index]


@pytest.mark.parametrize(
    ("listen", "host", "port", "text"),
    [
        ("127.0.0.1:9725", "127.0.0.1", 9725, "127.0.0.1:9725"),
        ("'[::1]:9725'", "::1", 9725, "[::1]:9725"),
        ("0.0.0.0:80", "0.0.0.0", 80, "0.0.0.0:80"),
        ("':9100'", "0.0.0.0", 9100, "0.0.0.0:9100"),
        ("{host: localhost, port: 8080}", "localhost", 8080, "localhost:8080"),
    ],
)
def test_listen(listen: str, host: str, port: int, text: str) -> None:
    config = parse_config(f"listen: {listen}\n")
    assert (config.listen.host, config.listen.port, str(config.listen)) == (host, port, text)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("registry.example.com:5000", "registry.example.com:5000"),
        ("Registry.Example.COM", "registry.example.com"),
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("'[::1]:5000'", "[::1]:5000"),
    ],
)
def test_registry_keys_are_normalized(key: str, expected: str) -> None:
    config = parse_config(f"registries:\n  {key}:\n    insecure: true\n")
    assert list(config.registries) == [expected]
    assert config.registry_for(expected).insecure
    assert config.registry_for(expected.upper()).insecure


def test_watch_overrides_defaults_and_defaults_cron() -> None:
    config = parse_config(
        """\
defaults: {cron: "0 9 * * 1-5", jitter: 5, missing_after: 4, failing_after: 5}
webhooks:
  - {name: a, url: "http://a.example/x"}
  - {name: b, url: "http://b.example/x"}
watch:
  - alpine
  - image: nginx
    interval: 90
    jitter: 0%
    missing_after: 1
    failing_after: 1
    webhooks: []
  - image: busybox
    webhooks: [b, b]
"""
    )
    alpine, nginx, busybox = resolve_watches(config)
    # Day-of-week numbers are rewritten as names: APScheduler 3 reads 0 as Monday.
    assert (alpine.interval, alpine.cron) == (None, "0 9 * * mon,tue,wed,thu,fri")
    assert (alpine.jitter, alpine.missing_after, alpine.failing_after) == (0.05, 4, 5)
    assert alpine.webhooks == ("a", "b")
    assert (nginx.interval, nginx.cron, nginx.jitter) == (90.0, None, 0.0)
    assert (nginx.missing_after, nginx.failing_after, nginx.webhooks) == (1, 1, ())
    assert busybox.webhooks == ("b",)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 0 * * 0", "0 0 * * sun"),
        ("0 0 * * 7", "0 0 * * sun"),
        ("0 0 * * 5-7", "0 0 * * sun,fri,sat"),
        ("0 0 * * */2", "0 0 * * sun,tue,thu,sat"),
        ("0 0 * * mon-fri", "0 0 * * mon,tue,wed,thu,fri"),
        ("0 0 * * SAT,0", "0 0 * * sun,sat"),
        ("0 12 1 jan *", "0 12 1 jan *"),
    ],
)
def test_cron_day_of_week_has_cron_meaning(cron: str, expected: str) -> None:
    from datetime import UTC, datetime

    from apscheduler.triggers.cron import CronTrigger

    config = parse_config(f"defaults: {{cron: '{cron}'}}\n")
    assert config.defaults.cron == expected
    if cron == "0 0 * * 0":
        trigger = CronTrigger.from_crontab(expected, timezone="UTC")
        fire = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
        assert fire is not None and fire.strftime("%A") == "Sunday"


@pytest.mark.parametrize(
    ("jitter", "fraction"),
    [("10%", 0.10), ("0%", 0.0), ("100%", 1.0), ("12.5%", 0.125), ("10", 0.10), ("25", 0.25)],
)
def test_jitter(jitter: str, fraction: float) -> None:
    assert parse_config(f"defaults: {{jitter: {jitter}}}\n").defaults.jitter == fraction


# --------------------------------------------------------------------------- interpolation


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGMON_TEST_VAR", "p@ss: #{}[]*&!'\"")
    monkeypatch.setenv("REG_PASSWORD", "${REGMON_TEST_VAR}")
    config = parse_config(
        """\
api_token: ${REGMON_TEST_UNSET:-fallback}
database: ${REGMON_TEST_UNSET:-sqlite:///x.db}
defaults:
  interval: ${REGMON_TEST_UNSET:-2m}
registries:
  r.example.com:
    username: u-${REGMON_TEST_UNSET:-}x
    password: ${REGMON_TEST_VAR}
  s.example.com:
    username: u
    password: ${REG_PASSWORD}
  t.example.com:
    username: u
    password: a$${LITERAL}b
    max_concurrency: ${REGMON_TEST_UNSET:-3}
"""
    )
    assert config.api_token == "fallback"
    assert config.database == "sqlite:///x.db"
    assert config.defaults.interval == 120
    r = config.registry_for("r.example.com")
    assert (r.username, r.resolved_password()) == ("u-x", "p@ss: #{}[]*&!'\"")
    # Substituted once: a value that looks like ${...} stays literal.
    assert config.registry_for("s.example.com").password == "${REGMON_TEST_VAR}"
    assert config.registry_for("t.example.com").password == "a${LITERAL}b"
    assert config.registry_for("t.example.com").max_concurrency == 3


def test_env_default_applies_to_empty_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGMON_TEST_VAR", "")
    assert parse_config("api_token: ${REGMON_TEST_VAR:-x}\n").api_token == "x"
    assert parse_config("api_token: ${REGMON_TEST_VAR}\n").api_token is None


def test_env_unset_without_default() -> None:
    message = _error(BASE + "  - image: alpine\n    webhooks: ['${REGMON_TEST_UNSET}']\n")
    assert "watch[1].webhooks[0]: environment variable REGMON_TEST_UNSET is not set" in message


def test_invalid_interpolation() -> None:
    message = _error("api_token: ${not-a-name}\n")
    assert "api_token: invalid interpolation" in message


# --------------------------------------------------------------------------- errors

ERROR_CASES = [
    ("unknown top-level key", "colour: blue\n", ["colour: unknown key"]),
    ("unknown nested key", "log: {level: info, colour: blue}\n", ["log.colour: unknown key"]),
    (
        "unknown key in a watch",
        BASE + "  - image: alpine\n    intervall: 5m\n",
        ["watch[1].intervall: unknown key"],
    ),
    (
        "bad duration",
        BASE + "  - image: a\n  - image: b\n    interval: 5 minutes\n",
        ["watch[2].interval: expected a duration like 30s, 5m, 1h (got '5 minutes')"],
    ),
    (
        "negative duration",
        "retention: -1d\n",
        ["retention: expected a duration like 30s, 5m, 1h (got '-1d')"],
    ),
    ("zero interval", "defaults: {interval: 0s}\n", ["defaults.interval: expected a positive"]),
    (
        "bad jitter",
        "defaults: {jitter: 150%}\n",
        ["defaults.jitter: expected a percentage between 0% and 100% like 10% (got '150%')"],
    ),
    ("jitter not a number", "defaults: {jitter: lots}\n", ["defaults.jitter: expected a perc"]),
    (
        "bad cron",
        BASE + "  - image: a\n    cron: '*/10 * * *'\n",
        ["watch[1].cron: expected a cron expression with 5 fields like '*/15 * * * *'"],
    ),
    ("cron out of range", "defaults: {cron: '61 * * * *'}\n", ["defaults.cron: expected a cron"]),
    (
        "bad reference",
        "watch:\n  - image: Nginx:latest:x\n",
        ["watch[0].image: invalid image reference 'Nginx:latest:x'"],
    ),
    (
        "image missing",
        "watch:\n  - interval: 5m\n",
        ["watch[0]: expected exactly one of image (a tag) or repository (its tags)"],
    ),
    (
        "unknown webhook name",
        BASE.replace("nginx:1.27", "nginx:1.27\n    webhooks: [opz]"),
        ["watch[0].webhooks[0]: unknown webhook 'opz' (defined: ops)"],
    ),
    (
        "unknown webhook name, none defined",
        "watch:\n  - image: a\n    webhooks: [ops]\n",
        ["watch[0].webhooks[0]: unknown webhook 'ops' (defined: none)"],
    ),
    (
        "interval and cron both set",
        BASE + "  - image: a\n    interval: 5m\n    cron: '* * * * *'\n",
        ["watch[1]: interval and cron are mutually exclusive"],
    ),
    (
        "defaults with interval and cron",
        "defaults: {interval: 5m, cron: '* * * * *'}\n",
        ["defaults: interval and cron are mutually exclusive"],
    ),
    (
        "duplicate watch",
        BASE + "  - image: alpine\n  - image: docker.io/library/nginx:1.27\n",
        ["watch[2].image: docker.io/library/nginx:1.27 is already watched by watch[0]"],
    ),
    (
        "password and password_file both set",
        "registries:\n  r.example.com:\n    username: u\n    password: x\n    password_file: /x\n",
        ["registries['r.example.com']: password and password_file are mutually exclusive"],
    ),
    (
        "password without username",
        "registries:\n  r.example.com:\n    password_file: /x\n",
        ["registries['r.example.com']: username is required"],
    ),
    (
        "registry key with scheme",
        "registries:\n  https://r.example.com: {}\n",
        ["registries: expected a registry host like registry.example.com:5000"],
    ),
    (
        "registry configured twice through an alias",
        "registries:\n  docker.io: {}\n  index.docker.io: {}\n",
        ["registries: registry 'index.docker.io' is configured twice (as 'docker.io')"],
    ),
    (
        "bad manifest method",
        "registries:\n  r.example.com: {manifest_method: post}\n",
        ["registries['r.example.com'].manifest_method: expected 'head' or 'get' (got 'post')"],
    ),
    (
        "max_concurrency below 1",
        "registries:\n  r.example.com: {max_concurrency: 0}\n",
        ["registries['r.example.com'].max_concurrency: expected a number >= 1"],
    ),
    ("missing_after below 1", "defaults: {missing_after: 0}\n", ["defaults.missing_after: expe"]),
    ("bad log level", "log: {level: loud}\n", ["log.level: expected 'debug', 'info'"]),
    ("bad listen", "listen: localhost\n", ["listen: expected host:port like 127.0.0.1:9725"]),
    ("bad listen port", "listen: 'localhost:99999'\n", ["listen: expected host:port"]),
    ("bad database", "database: regmon.db\n", ["database: expected an SQLAlchemy URL"]),
    (
        "bad platform",
        "watch:\n  - image: a\n    platforms: [linux/amd64, amd64]\n",
        ["watch[0].platforms[1]: expected a platform like linux/amd64"],
    ),
    (
        "platforms not a list",
        "watch:\n  - image: a\n    platforms: linux/amd64\n",
        ["watch[0].platforms: expected a list"],
    ),
    (
        "bad event",
        "webhooks:\n  - {name: a, url: 'https://h.example/', events: [tag.changed, tag.gone]}\n",
        ["webhooks[0].events[1]: unknown event 'tag.gone'"],
    ),
    (
        "bad webhook name",
        "webhooks:\n  - {name: 'ops team', url: 'https://h.example/'}\n",
        ["webhooks[0].name: expected a name of letters, digits"],
    ),
    (
        "duplicate webhook name",
        "webhooks:\n  - {name: a, url: 'https://h.example/'}\n  - {name: a, url: 'https://i.example/'}\n",
        ["webhooks[1].name: duplicate webhook name 'a' (also webhooks[0])"],
    ),
    (
        "bad webhook url",
        "webhooks:\n  - {name: a, url: 'ftp://h.example/'}\n",
        ["webhooks[0].url: expected an http:// or https:// URL"],
    ),
    (
        "bad webhook format",
        "webhooks:\n  - {name: a, url: 'https://h.example/', format: xml}\n",
        ["webhooks[0].format: expected 'json', 'slack' or 'discord' (got 'xml')"],
    ),
    (
        "max_retry_age too short",
        "webhooks:\n  - {name: a, url: 'https://h.example/', max_retry_age: 30s}\n",
        ["webhooks[0].max_retry_age: expected a duration of at least 1m"],
    ),
    (
        "reserved webhook header",
        "webhooks:\n  - {name: a, url: 'https://h.example/', headers: {webhook-id: x}}\n",
        ["webhooks[0].headers: header 'webhook-id' is set by regmon"],
    ),
    ("top level not a mapping", "- a\n- b\n", ["expected a mapping of settings at the top"]),
    ("YAML syntax error", "log:\n  level: info\n format: [\n", ["line 3, column 2: invalid YAML"]),
    ("duplicate YAML key", "log: {}\nretention: 1d\nlog: {}\n", ["line 3, column 1", "duplicate"]),
    (
        "several errors on one line",
        "retention: forever\nlog: {format: xml}\n",
        ["retention: expected a duration", "log.format: expected 'text' or 'json'", "'); "],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in ERROR_CASES],
)
def test_errors_name_file_key_path_and_expectation(text: str, expected: list[str]) -> None:
    message = _error(text)
    for part in expected:
        assert part in message


# Exact messages: what the scheduler, the pruner and datetime can hold (issue 9 item 4).
BOUND_CASES = [
    (
        "interval beyond a year (APScheduler's OverflowError)",
        "defaults: {interval: 99999999999w}\n",
        "defaults.interval: expected a duration of at most 365d (got '99999999999w')",
    ),
    (
        "interval below a second",
        "watch:\n  - image: a\n    interval: 1ms\n",
        "watch[0].interval: expected a duration of at least 1s (got '1ms')",
    ),
    (
        "interval as a bare number below a second",
        "defaults: {interval: 0.5}\n",
        "defaults.interval: expected a duration of at least 1s (got 0.5)",
    ),
    (
        "retention past year 1 (the pruner's OverflowError)",
        "retention: 5000000d\n",
        "retention: expected a duration of at most 36500d (got '5000000d')",
    ),
    (
        "max_retry_age past year 9999",
        "webhooks:\n  - {name: a, url: 'https://h.example/', max_retry_age: 999999999d}\n",
        "webhooks[0].max_retry_age: expected a duration of at most 36500d (got '999999999d')",
    ),
    (
        "registry timeout of a day",
        "registries:\n  r.example.com: {timeout: 1d}\n",
        "registries['r.example.com'].timeout: expected a duration of at most 5m (got '1d')",
    ),
    (
        "webhook timeout of an hour",
        "webhooks:\n  - {name: a, url: 'https://h.example/', timeout: 1h}\n",
        "webhooks[0].timeout: expected a duration of at most 5m (got '1h')",
    ),
    (
        "a replica lease below a second",
        "ha: {lease: 500ms}\n",
        "ha.lease: expected a duration of at least 1s (got '500ms')",
    ),
    (
        "a replica lease of an hour (a failover that long is an outage)",
        "ha: {lease: 1h}\n",
        "ha.lease: expected a duration of at most 10m (got '1h')",
    ),
    (
        "an unknown ha key",
        "ha: {lease: 15s, leader: true}\n",
        "ha.leader: unknown key",
    ),
    (
        "a number too big for a float",
        "retention: " + "9" * 400 + "\n",
        "retention: expected a duration like 30s, 5m, 1h (got a huge number)",
    ),
    (
        "digits that read as infinity",
        "retention: '1" + "0" * 400 + "s'\n",
        "retention: expected a duration like 30s, 5m, 1h (got '1" + "0" * 55 + "...)",
    ),
    (
        "a cron that never fires (February 30)",
        "defaults: {cron: '0 0 30 2 *'}\n",
        "defaults.cron: expected a cron expression that fires (no date matches '0 0 30 2 *')",
    ),
    (
        "a cron that never fires (April 31)",
        "watch:\n  - image: a\n    cron: '0 0 31 apr *'\n",
        "watch[0].cron: expected a cron expression that fires (no date matches '0 0 31 apr *')",
    ),
    (
        "a cron step of zero",
        "defaults: {cron: '*/0 * * * *'}\n",
        "defaults.cron: expected a cron expression with 5 fields like '*/15 * * * *' "
        "(got '*/0 * * * *'): Increment must be higher than 0",
    ),
    (
        "a cron range backwards",
        "defaults: {cron: '5-1 * * * *'}\n",
        "defaults.cron: expected a cron expression with 5 fields like '*/15 * * * *' "
        "(got '5-1 * * * *'): The minimum value in a range must not be higher than the maximum",
    ),
    (
        "a non-ASCII api_token",
        "api_token: 'tökén-Sup3r'\n",
        "api_token: expected visible ASCII characters without spaces "
        "(an Authorization header cannot carry anything else)",
    ),
    (
        "an api_token with a space",
        "api_token: 'two words'\n",
        "api_token: expected visible ASCII characters without spaces "
        "(an Authorization header cannot carry anything else)",
    ),
    (
        "a webhook header value that httpx cannot encode",
        "webhooks:\n  - {name: a, url: 'https://h.example/', headers: {X-Team: 'Équipe'}}\n",
        "webhooks[0].headers: header 'X-Team': value must be ASCII text",
    ),
    (
        "an integer of more than 4300 digits",
        "retention: " + "9" * 5000 + "\n",
        "invalid YAML: Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in BOUND_CASES],
)
def test_values_the_service_cannot_hold_are_refused_at_load(text: str, expected: str) -> None:
    assert _error(text) == f"config/regmon.yaml: {expected}"


@pytest.mark.parametrize(
    ("text", "attribute", "seconds"),
    [
        ("defaults: {interval: 1s}\n", "interval", 1.0),
        ("defaults: {interval: 365d}\n", "interval", 365 * 86400.0),
        ("retention: 36500d\n", "retention", 36500 * 86400.0),
        ("ha: {lease: 1s}\n", "lease", 1.0),
        ("ha: {lease: 10m}\n", "lease", 600.0),
    ],
)
def test_bounds_are_inclusive(text: str, attribute: str, seconds: float) -> None:
    config = parse_config(text)
    holders = {"interval": config.defaults, "lease": config.ha}
    assert getattr(holders.get(attribute, config), attribute) == seconds


def test_rare_cron_and_every_visible_ascii_token_are_accepted() -> None:
    token = "".join(chr(code) for code in range(0x21, 0x7F))
    quoted = token.replace("'", "''")
    config = parse_config(f"defaults: {{cron: '0 0 29 2 *'}}\napi_token: '{quoted}'\n")
    assert config.defaults.cron == "0 0 29 2 *"
    assert config.api_token == token


def test_many_problems_are_one_bounded_line() -> None:
    message = _error("watch: [" + ",".join(["a"] * 5000) + "]\n")
    assert message.count("is already watched by watch[0]") == 20
    assert message.endswith("; and 4979 more")


def test_config_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_config("colour: blue\n")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: no such file"


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "regmon.yaml"
    path.write_text("database: sqlite:///x.db\nwatch:\n  - image: a\n   - image: b\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 4, column ")
    assert "\n" not in message


def test_unknown_webhook_lookup() -> None:
    config = parse_config(BASE, source="c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: unknown webhook 'x' \(defined: ops\)$"):
        config.webhook("x")


# --------------------------------------------------------------------------- secrets

SECRET = "hunter2-Sup3rSecret"


@pytest.mark.parametrize(
    "text",
    [
        # the secret sits beside a failing key
        f"registries:\n  r.example.com:\n    username: u\n    password: {SECRET}\n"
        "    password_file: /x\n",
        f"registries:\n  r.example.com:\n    password: {SECRET}\n",
        f"api_token: {SECRET}\nretention: soon\n",
        f"webhooks:\n  - name: a\n    url: https://h.example/\n    secret: {SECRET}\n"
        "    secret_file: /x\n",
        f"webhooks:\n  - name: a\n    url: ftp://user:{SECRET}@h.example/\n",
        f"webhooks:\n  - name: a\n    url: 'https://h.example:bad/{SECRET}'\n",
        f"webhooks:\n  - name: a\n    url: https://h.example/\n"
        f"    headers: {{X-Token: [{SECRET}]}}\n",
        f"database: 'postgresql//user:{SECRET}@db/regmon'\n",
        f"registries:\n  r.example.com:\n    username: u\n    password: [{SECRET}]\n",
        f"log:\n  level: info\n password: {SECRET}: [\n",
        f"registries:\n  r.example.com:\n    username: u\n    password: {SECRET}\n"
        f"    password: {SECRET}2\n",
    ],
)
def test_secrets_never_appear_in_errors(text: str) -> None:
    assert SECRET not in _error(text)


def test_secrets_never_appear_in_repr() -> None:
    config = parse_config(
        f"""\
database: postgresql://user:{SECRET}@db/regmon
api_token: {SECRET}
registries:
  r.example.com: {{username: u, password: {SECRET}}}
webhooks:
  - name: a
    url: https://user:{SECRET}@h.example/hooks/{SECRET}?token={SECRET}
    secret: {SECRET}
    headers: {{Authorization: Bearer {SECRET}}}
"""
    )
    registry = config.registry_for("r.example.com")
    (webhook,) = config.webhooks
    for obj in (config, registry, webhook):
        assert SECRET not in repr(obj)
        assert SECRET not in str(obj)
    assert registry.resolved_password() == SECRET
    assert webhook.resolved_secret() == SECRET
    assert webhook.redacted_url == "https://***@h.example/***"
    assert SECRET in webhook.url


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://hooks.example.com", "https://hooks.example.com"),
        ("https://hooks.example.com/", "https://hooks.example.com"),
        ("http://u:p@127.0.0.1:8080/x", "http://***@127.0.0.1:8080/***"),
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/***"),
        ("http://[::1]:9000/?token=x", "http://[::1]:9000/***"),
    ],
)
def test_redacted_url(url: str, redacted: str) -> None:
    assert WebhookConfig(name="a", url=url).redacted_url == redacted


def test_secret_files_are_stripped_and_read_lazily(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    config = parse_config(
        f"""\
registries:
  r.example.com: {{username: u, password_file: {secret}}}
webhooks:
  - {{name: a, url: "https://h.example/", secret_file: {secret}}}
"""
    )
    registry = config.registry_for("r.example.com")
    with pytest.raises(ConfigError) as caught:
        registry.resolved_password()
    assert str(caught.value) == f"password_file {secret}: cannot read secret: no such file"
    secret.write_text(f"{SECRET}\r\n \t\n")
    assert registry.resolved_password() == SECRET
    assert config.webhooks[0].resolved_secret() == SECRET


def test_unreadable_secret_file_names_file_not_content(tmp_path: Path) -> None:
    webhook = WebhookConfig(name="a", url="https://h.example/", secret_file=str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        webhook.resolved_secret()
    assert str(caught.value) == f"secret_file {tmp_path}: cannot read secret: is a directory"


def test_empty_secret_values_mean_unset() -> None:
    config = parse_config("api_token: ''\nregistries:\n  r.example.com: {password: ''}\n")
    assert config.api_token is None
    assert config.registry_for("r.example.com").resolved_password() is None


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("0s", 0.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("90d", 90 * 86400.0),
        ("2w", 14 * 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
        ("1.5h", 5400.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-1s",
        "-5",
        -1,
        "1y",
        "5 minutes",
        "5 m",
        "5M",
        "1m1h",  # largest unit first
        "5m5m",  # each unit once
        "h",
        "1.h",
        ".5s",
        "1e3",
        "inf",
        math.inf,
        math.nan,
        True,
        None,
        [],
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like 30s, 5m, 1h \(got .*\)$"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (30, "30s"),
        (300, "5m"),
        (5400, "1h30m"),
        (90 * 86400, "90d"),
        (86400 + 1.5, "1d1s500ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, math.inf, math.nan])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=10**12))
def test_format_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)
