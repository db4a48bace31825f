"""The operations bundle: Dockerfile, compose stack, Prometheus rules, Alertmanager, Grafana.

These tests need no Docker engine. `promtool` (Debian package `prometheus`) is
mandatory: without it the rule tests fail rather than skip, so a CI machine
that lost it is noticed. `amtool` and `docker compose` are used when present.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import ROOT
from support.prometheus import promtool

from monitor.config import load_config, resolve_watches
from monitor.metrics import METRIC_NAMES

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROM_DIR = ROOT / "config" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
ALERTMANAGER = ROOT / "config" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "regmon.json"
COMPOSE_REGMON = ROOT / "config" / "compose" / "regmon.yaml"
COMPOSE_REGMON_HA = ROOT / "config" / "compose" / "regmon-ha.yaml"
SEED = ROOT / "config" / "compose" / "seed.sh"

# The metric names of SPEC §7. Must match what monitor/metrics.py exports;
# replace with an import from monitor.metrics once that module lists them.
# What monitor/metrics.py exports: the dashboard and rules may use nothing else.
EXPORTED_METRICS = METRIC_NAMES
HISTOGRAMS = frozenset({"regmon_check_duration_seconds"})
# Prometheus target labels; regmon's own metrics never carry them (SPEC §7).
FORBIDDEN_LABELS = frozenset({"namespace", "pod", "job", "instance"})
ALERT_NAMES = frozenset(
    {
        "RegmonImageMissing",
        "RegmonTagOverwritten",
        "RegmonChecksFailing",
        "RegmonChecksStale",
        "RegmonWebhookBacklog",
        "RegmonRateLimitLow",
        "RegmonDown",
        "RegmonReplicaDown",
    }
)
# The alerts about regmon's own targets: they alone carry job (and instance).
TARGET_ALERTS = frozenset({"RegmonDown", "RegmonReplicaDown"})

METRIC_RE = re.compile(r"\bregmon_[a-z_]+")
MATCHER_RE = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# Grafana macros and variables, replaced so the expressions parse as PromQL.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$registry": ".*",
    "$repository": ".*",
}


# --- helpers ------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def metric_names(expr: str) -> set[str]:
    names = set()
    for name in METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if base != name and base in HISTOGRAMS:
                name = base
                break
        names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/on/without/group_left clauses."""
    names = set(MATCHER_RE.findall(expr))
    for group in GROUPING_RE.findall(expr):
        names.update(part.strip() for part in group.split(",") if part.strip())
    return names


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard: panels, annotations, variables."""
    exprs = []
    for key, value in walk(dashboard()):
        if key == "expr" and isinstance(value, str):
            exprs.append(value)
        elif key == "definition" and isinstance(value, str) and value:
            exprs.append(value)
    return exprs


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount of a compose service."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/", "~")):
                mounts.append((COMPOSE.parent / source, target))
        elif volume.get("type") == "bind":
            mounts.append((COMPOSE.parent / volume["source"], volume["target"]))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind a container path, through the service's bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target:
            return source
        if container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target.rstrip("/")) + 1 :]
    return None


def flag(service: dict[str, Any], name: str) -> str:
    for arg in service.get("command", []):
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    raise AssertionError(f"no --{name}= in {service.get('command')}")


# --- Prometheus rules ---------------------------------------------------------


def test_promtool_check_rules() -> None:
    assert_ok(run([promtool(), "check", "rules", str(ALERTS)]))


def test_promtool_test_rules() -> None:
    assert_ok(run([promtool(), "test", "rules", str(ALERTS_TEST)]))


def test_promtool_check_config_from_its_directory() -> None:
    # rule_files is relative to prometheus.yml, as mounted in the compose stack.
    assert_ok(run([promtool(), "check", "config", "prometheus.yml"], cwd=PROM_DIR))


def test_the_rule_set_is_the_documented_one() -> None:
    assert {rule["alert"] for rule in alert_rules()} == ALERT_NAMES


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_rule_has_for_severity_summary_description(rule: dict[str, Any]) -> None:
    assert rule.get("for"), "every rule needs a for: so one flaky check never pages"
    assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}
    annotations = rule.get("annotations", {})
    assert annotations.get("summary")
    assert annotations.get("description")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_rules_use_only_exported_metrics_and_no_target_labels(rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    assert metric_names(expr) <= EXPORTED_METRICS
    allowed = {"job"} if rule["alert"] in TARGET_ALERTS else set()
    assert not (label_names(expr) & FORBIDDEN_LABELS) - allowed, expr
    assert not set(rule.get("labels", {})) & FORBIDDEN_LABELS


# Alerts about a whole registry: they read per-image metrics but aggregate them
# by registry, so their labels name the registry, not an image.
REGISTRY_ALERTS = frozenset({"RegmonChecksFailing"})


def test_per_image_alerts_name_the_image() -> None:
    for rule in alert_rules():
        uses_image = any(name.startswith("regmon_image_") for name in metric_names(rule["expr"]))
        if rule["alert"] in REGISTRY_ALERTS:
            for key in ("summary", "description"):
                assert "$labels.registry" in rule["annotations"][key], (rule["alert"], key)
                assert "$labels.image" not in rule["annotations"][key], (rule["alert"], key)
        elif uses_image:
            for key in ("summary", "description"):
                assert "$labels.image" in rule["annotations"][key], (rule["alert"], key)
            assert "$labels.registry" in rule["annotations"]["description"], rule["alert"]


def test_every_rule_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in load_yaml(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert firing >= ALERT_NAMES, ALERT_NAMES - firing
    assert quiet >= ALERT_NAMES, ALERT_NAMES - quiet


def test_registry_outage_case_is_tested() -> None:
    """A test where errors climb and the image stays available: Missing must not fire."""
    for test in load_yaml(ALERTS_TEST)["tests"]:
        series = " ".join(s["series"] for s in test["input_series"])
        cases = test.get("alert_rule_test", [])
        fails = {c["alertname"] for c in cases if c.get("exp_alerts")}
        quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
        if (
            'status="error"' in series
            and "regmon_image_available" in series
            and "RegmonChecksFailing" in fails
            and "RegmonImageMissing" in quiet
        ):
            return
    pytest.fail("no promtool test shows that a registry outage does not fire RegmonImageMissing")


# --- Alertmanager ---------------------------------------------------------------


def _matches(matchers: list[str], alertname: str) -> bool:
    """Whether `alertname` satisfies every alertname matcher of a matcher list."""
    for matcher in matchers:
        m = re.fullmatch(r'\s*alertname\s*(=~|!~|!=|=)\s*"?([^"]*)"?\s*', matcher)
        if m is None:
            continue
        op, value = m.groups()
        ok = {
            "=": alertname == value,
            "!=": alertname != value,
            "=~": re.fullmatch(value, alertname) is not None,
            "!~": re.fullmatch(value, alertname) is None,
        }[op]
        if not ok:
            return False
    return True


def test_alertmanager_routes_to_a_receiver_grouped_by_registry() -> None:
    config = load_yaml(ALERTMANAGER)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    assert {"alertname", "registry"} <= set(config["route"]["group_by"])
    urls = [w["url"] for r in receivers.values() for w in r.get("webhook_configs", [])]
    services = set(compose()["services"])
    assert urls
    for url in urls:
        host = re.match(r"https?://([^/:]+)", url)
        assert host is not None and host.group(1) in services, url


def test_alertmanager_inhibits_per_image_alerts_during_a_registry_outage() -> None:
    rules = load_yaml(ALERTMANAGER)["inhibit_rules"]
    for target in ("RegmonImageMissing", "RegmonChecksStale"):
        assert any(
            _matches(rule["source_matchers"], "RegmonChecksFailing")
            and _matches(rule["target_matchers"], target)
            and rule.get("equal") == ["registry"]
            for rule in rules
        ), f"no inhibit rule RegmonChecksFailing -> {target} with equal [registry]"


def test_alertmanager_regmon_down_inhibits_every_other_alert() -> None:
    rules = load_yaml(ALERTMANAGER)["inhibit_rules"]
    down = [r for r in rules if _matches(r["source_matchers"], "RegmonDown")]
    assert down
    for name in ALERT_NAMES - {"RegmonDown"}:
        assert any(_matches(r["target_matchers"], name) and not r.get("equal") for r in down)
    assert not any(_matches(r["target_matchers"], "RegmonDown") for r in down)


def test_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: run scripts/test, which installs prometheus-alertmanager"
    assert_ok(run([amtool, "check-config", str(ALERTMANAGER)]))


# --- Grafana ------------------------------------------------------------------


def test_dashboard_identity_and_variables() -> None:
    dash = dashboard()
    assert dash["uid"] == "regmon"
    assert dash["title"] == "regmon"
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for name in ("registry", "repository"):
        assert variables[name]["multi"] is True
        assert variables[name]["includeAll"] is True
        assert "regmon_image_available" in variables[name]["definition"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_uses_only_exported_metrics() -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert used, "no regmon metric found in the dashboard"
    assert used <= EXPORTED_METRICS, used - EXPORTED_METRICS


def test_dashboard_uses_no_target_labels() -> None:
    for expr in dashboard_exprs():
        assert not label_names(expr) & FORBIDDEN_LABELS, expr


def test_dashboard_panels_cover_the_contract() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "count(regmon_image_available",
        'regmon_image_status{status="denied"',
        "regmon_image_digest_info",
        "regmon_image_last_change_timestamp_seconds",
        "increase(regmon_image_digest_changes_total",
        "sum by (registry, status) (rate(regmon_checks_total",
        "regmon_check_duration_seconds_bucket",
        "regmon_registry_ratelimit_remaining",
        "regmon_webhook_pending",
        "regmon_webhook_oldest_pending_age_seconds",
    ):
        assert needle in exprs, needle
    datasources = {
        json.dumps(value, sort_keys=True)
        for key, value in walk(dashboard()["panels"])
        if key == "datasource"
    }
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}


def test_dashboard_exprs_parse_as_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        if expr.startswith("label_values("):
            continue
        for macro, value in GRAFANA_SUBSTITUTIONS.items():
            expr = expr.replace(macro, value)
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run([promtool(), "check", "rules", str(path)]))


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    service = compose()["services"]["grafana"]
    provider = load_yaml(ROOT / "config/grafana/provisioning/dashboards/regmon.yml")
    path = host_path(service, provider["providers"][0]["options"]["path"])
    assert path is not None and (path / "regmon.json").is_file()
    datasource = load_yaml(ROOT / "config/grafana/provisioning/datasources/prometheus.yml")
    (ds,) = datasource["datasources"]
    assert ds["uid"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    current = {v["name"]: v for v in dashboard()["templating"]["list"]}["datasource"]["current"]
    assert current["value"] == ds["uid"]


# --- compose ------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    services = compose()["services"]
    assert {"regmon", "registry", "seed", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert services["registry"]["image"].startswith("registry:2")
    assert services["registry"]["environment"]["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
    assert "registry" in services["seed"]["depends_on"]
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_compose_referenced_files_exist() -> None:
    data = compose()
    declared_volumes = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        build = service.get("build")
        if build is not None:
            context = COMPOSE.parent / (build if isinstance(build, str) else build["context"])
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), name
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (COMPOSE.parent / path).is_file(), (name, path)
        for source, _ in bind_mounts(service):
            assert source.exists(), (name, source)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared_volumes, (name, source)
    for section in ("configs", "secrets"):
        for item in (data.get(section) or {}).values():
            if "file" in item:
                assert (COMPOSE.parent / item["file"]).exists()


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_mount_layout_matches_the_configs() -> None:
    services = compose()["services"]
    prometheus = host_path(services["prometheus"], flag(services["prometheus"], "config.file"))
    assert prometheus is not None and prometheus.resolve() == PROM_CONFIG.resolve()
    for rule_file in load_yaml(PROM_CONFIG)["rule_files"]:
        container_path = f"/etc/prometheus/{rule_file}"
        assert host_path(services["prometheus"], container_path) is not None, rule_file
        assert (PROM_CONFIG.parent / rule_file).is_file()
    alertmanager = host_path(
        services["alertmanager"], flag(services["alertmanager"], "config.file")
    )
    assert alertmanager is not None and alertmanager.resolve() == ALERTMANAGER.resolve()
    regmon = host_path(services["regmon"], "/etc/regmon/regmon.yaml")
    assert regmon is not None and regmon.resolve() == COMPOSE_REGMON.resolve()
    seed = services["seed"]
    seed_script = host_path(seed, seed["entrypoint"][-1])
    assert seed_script is not None and seed_script.resolve() == SEED.resolve()


def test_prometheus_scrapes_regmon_as_job_regmon() -> None:
    config = load_yaml(PROM_CONFIG)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "regmon"]
    assert job["static_configs"][0]["targets"] == ["regmon:9725"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


# --- the compose regmon config and the seeder -----------------------------------


def seeded_images() -> set[str]:
    text = SEED.read_text(encoding="utf-8")
    return {
        f"registry:5000/{repo}:{tag}"
        for repo, tag in re.findall(r"^push_image (\S+) (\S+)$", text, re.M)
    }


def test_compose_regmon_config() -> None:
    config = load_yaml(COMPOSE_REGMON)
    assert config["listen"] == "0.0.0.0:9725"
    assert config["database"] == "sqlite:////var/lib/regmon/regmon.db"
    assert config["defaults"]["interval"] == "30s"
    assert config["registries"]["registry:5000"]["insecure"] is True
    watched = {entry["image"] for entry in config["watch"]}
    assert seeded_images() == {
        "registry:5000/demo/app:1.0",
        "registry:5000/demo/app:2.0",
        "registry:5000/demo/web:stable",
    }
    assert seeded_images() <= watched


def test_compose_ha_profile_is_postgres_and_two_replicas_and_stays_out_of_a_plain_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    ha = {name for name, service in services.items() if "ha" in service.get("profiles", [])}
    assert ha == {"postgres", "regmon-a", "regmon-b"}
    # A plain `docker compose up` starts what it started before: no service has another profile.
    assert all(set(s.get("profiles", [])) <= {"ha"} for s in services.values())
    for name in ("regmon-a", "regmon-b"):
        replica = services[name]
        path = host_path(replica, "/etc/regmon/regmon.yaml")
        assert path is not None and path.resolve() == COMPOSE_REGMON_HA.resolve()
        assert replica["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["regmon-a"]["ports"] != services["regmon-b"]["ports"]
    monkeypatch.delenv("REGMON_DB_PASSWORD", raising=False)
    config = load_config(str(COMPOSE_REGMON_HA))
    assert config.database == "postgresql+psycopg://regmon:regmon@postgres:5432/regmon"
    assert config.ha.lease == 15.0
    assert {watch.key for watch in resolve_watches(config)} >= seeded_images()


def test_seed_script_is_valid_sh() -> None:
    assert_ok(run(["sh", "-n", str(SEED)]))


# --- Dockerfile -----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a final stage"
    final_from = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], froms[-1].split()[0])
    assert final_from == "python:3.11-slim"
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in final:
        by_keyword.setdefault(keyword, []).append(rest)
    (user,) = by_keyword["USER"]
    assert user.split(":")[0] not in {"root", "0"}
    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert "http://127.0.0.1:9725/healthz" in healthcheck and "python" in healthcheck
    assert json.loads(by_keyword["ENTRYPOINT"][0]) == ["regmon"]
    assert json.loads(by_keyword["CMD"][0]) == ["run", "--config", "/etc/regmon/regmon.yaml"]
    assert by_keyword["VOLUME"] == ["/var/lib/regmon"]
    labels = " ".join(by_keyword["LABEL"])
    for key in ("title", "source", "licenses", "description"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    # The final stage gets the venv with the installed wheel, never a source tree.
    assert [rest for keyword, rest in final if keyword in {"COPY", "ADD"}] == [
        "--from=builder /opt/venv /opt/venv"
    ]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "sqlite:////var/lib/regmon/regmon.db" in text
    assert "/etc/regmon/regmon.yaml" in text


def test_dockerignore_keeps_what_the_build_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines, "allow-list: nothing enters the build context by accident"
    for needed in ("!pyproject.toml", "!setup.py", "!monitor/", "!migrations/"):
        assert needed in lines


def test_dockerfile_builds_a_wheel_and_installs_it() -> None:
    instructions = dockerfile_instructions()
    first_final = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    runs = [rest for keyword, rest in instructions[:first_final] if keyword == "RUN"]
    wheel = [r for r in runs if "pip wheel" in r]
    assert len(wheel) == 1 and "--wheel-dir /dist" in wheel[0]
    install = [r for r in runs if "pip install" in r]
    assert len(install) == 1 and 'pip install "$(ls /dist/regmon-*.whl)[postgres]"' in install[0]
    assert not any(re.search(r"pip install\b.*(\s-e\b|--editable)", r) for r in runs)
    # The builder proves the installed package migrates and reads a database on its own.
    assert "regmon db upgrade" in install[0] and "regmon status" in install[0]
