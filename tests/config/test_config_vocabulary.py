"""One word for each thing, config side: the platform syntax of ``--platform`` and
``platforms:``, the registry settings, the webhook lookup by name, and the config's
``${ENV}`` dialect of the one interpolation module (compose's: tests/sources/test_sources.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from monitor.checker import registry_settings
from monitor.cli import main
from monitor.config import parse_config, resolve_watches
from monitor.errors import ConfigError
from monitor.interpolation import Substitution, SubstitutionError, substitute
from monitor.registry.client import RegistrySettings

# --------------------------------------------------------------------------- platforms

PLATFORMS = [
    ("linux/amd64", True),
    ("linux/arm/v7", True),
    ("LINUX/ARM64", True),
    (" linux/amd64 ", True),
    ("linux/ppc64le", True),
    ("windows/amd64/10.0.17763", True),  # refused by the config before
    ("linux/x86-64", True),
    ("linux", False),
    ("amd64", False),
    ("", False),
    ("linux//amd64", False),
    ("linux/amd64/v2/x", False),
    ("linux/am d64", False),
    ("linux/ämd64", False),
    ("linux/amd64;", False),
]


def _config_accepts(text: str) -> bool:
    document = f"watch:\n  - image: a\n    platforms: [{text!r}]\n"
    try:
        config = parse_config(document)
    except ConfigError as exc:
        assert str(exc).startswith(
            "<string>: watch[0].platforms[0]: expected a platform like linux/amd64 "
            "or linux/arm/v7 (got "
        ), exc
        return False
    assert resolve_watches(config)[0].platforms == (text.strip().lower(),)
    return True


def _cli_accepts(text: str) -> bool:
    # Platforms are read before the config: a refused one is named, an accepted one
    # gets as far as the (missing) config file, so no registry is asked.
    result = CliRunner().invoke(
        main,
        ["check", "--platform", text, "--config", "/nonexistent/regmon.yaml", "alpine"],
        env={"REGMON_CONFIG": None},
    )
    assert result.exit_code == 2, result.output
    if "Invalid value for --platform: expected a platform like linux/amd64" in result.output:
        return False
    assert "/nonexistent/regmon.yaml" in result.output, result.output
    return True


@pytest.mark.parametrize(("text", "accepted"), PLATFORMS)
def test_platform_syntax_is_one_for_cli_and_config(text: str, accepted: bool) -> None:
    assert (_config_accepts(text), _cli_accepts(text)) == (accepted, accepted)


# --------------------------------------------------------------------------- registry settings


def test_registry_settings_are_built_in_one_place() -> None:
    config = parse_config(
        "registries:\n"
        "  r.example.com: {timeout: 3s, max_concurrency: 2, manifest_method: get, insecure: true}\n"
        "  index.docker.io: {max_concurrency: 1}\n"
    )
    configured = RegistrySettings(
        insecure=True, max_concurrency=2, timeout=3.0, manifest_method="get"
    )
    assert config.registry_settings("R.example.com") == configured
    assert config.registry_settings("docker.io") == RegistrySettings(max_concurrency=1)
    assert config.registry_settings("ghcr.io") == RegistrySettings()
    assert registry_settings(config, "r.example.com") == configured
    assert registry_settings(None, "r.example.com") == RegistrySettings()


# --------------------------------------------------------------------------- webhooks


def test_webhook_lookup_with_a_default() -> None:
    config = parse_config(
        "webhooks:\n  - {name: ops, url: 'http://127.0.0.1:9/'}\n", source="c.yaml"
    )
    assert config.webhook("ops", default=None) is config.webhooks[0]
    assert config.webhook("ops") is config.webhooks[0]
    assert config.webhook("dev", default=None) is None
    with pytest.raises(ConfigError, match=r"^c.yaml: unknown webhook 'dev' \(defined: ops\)$"):
        config.webhook("dev")


# --------------------------------------------------------------------------- interpolation

NOT_SET = "environment variable A is not set (write ${A:-default} to give a default)"
INVALID = "invalid interpolation, expected ${NAME} or ${NAME:-default}"

REGMON_FORMS = [
    ("${A}", {"A": "1"}, "1"),
    ("x${A}y${B}", {"A": "1", "B": "2"}, "x1y2"),
    ("${A}", {"A": ""}, ""),
    ("${A:-d}", {}, "d"),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A:-}", {}, ""),
    ("${A:-a b:c}", {}, "a b:c"),
    ("$${A}", {"A": "1"}, "${A}"),
    ("$A $$ $", {"A": "1"}, "$A $$ $"),  # only ${...} is interpolated
]


@pytest.mark.parametrize(("text", "variables", "expected"), REGMON_FORMS)
def test_config_interpolation(text: str, variables: dict[str, str], expected: str) -> None:
    assert substitute(text, variables, dialect="regmon") == Substitution(expected)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("${A}", (NOT_SET,)),
        ("${A}${A}", (NOT_SET, NOT_SET)),  # every problem, not only the first
        ("${A-d}", (INVALID,)),  # compose forms are not the config's
        ("${A:?e}", (INVALID,)),
        ("${not-a-name}", (INVALID,)),
    ],
)
def test_config_interpolation_problems(text: str, problems: tuple[str, ...]) -> None:
    with pytest.raises(SubstitutionError) as caught:
        substitute(text, {"B": "1"}, dialect="regmon")
    assert caught.value.problems == problems
    assert str(caught.value) == "; ".join(problems)
