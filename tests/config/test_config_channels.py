"""The webhooks schema for channels: ``apprise:`` beside ``url:``, and ``batch:``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.images import ImagePusher
from support.registry import RegistryServer

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError

MAIL = (
    "mailto://mailer:MailPassw0rdSecret@127.0.0.1:2525"
    "?mode=insecure&from=regmon@example.com&to=ops@example.com"
)


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="regmon.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert "MailPassw0rdSecret" not in message and "TokenBSecret" not in message
    return message


def test_an_apprise_target_with_events_batch_and_max_retry_age() -> None:
    config = parse_config(
        f"webhooks:\n  - {{name: mail, apprise: '{MAIL}', events: [tag.missing],"
        " batch: 30s, max_retry_age: 2h}\n"
    )
    (hook,) = config.webhooks
    assert (hook.url, hook.apprise, hook.events, hook.batch) == (
        None,
        MAIL,
        ("tag.missing",),
        30.0,
    )
    assert hook.max_retry_age == 7200.0
    assert hook.target == MAIL
    assert hook.redacted_url == "mailto://***@127.0.0.1:2525/***"
    assert "MailPassw0rdSecret" not in repr(config)


def test_a_url_target_keeps_its_redaction_and_has_no_batch_by_default() -> None:
    (hook,) = parse_config("webhooks:\n  - {name: ops, url: 'https://u:p@h.example/x'}\n").webhooks
    assert (hook.batch, hook.apprise, hook.redacted_url) == (
        None,
        None,
        "https://***@h.example/***",
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{name: a}",
            "webhooks[0]: expected exactly one of url (an HTTP webhook) or apprise (a URL)",
        ),
        (
            f"{{name: a, url: 'http://h.example/', apprise: '{MAIL}'}}",
            "webhooks[0]: expected exactly one of url (an HTTP webhook) or apprise (a URL)",
        ),
        (
            f"{{name: a, apprise: '{MAIL}', format: slack}}",
            "webhooks[0]: format: only for url: targets, not apprise:",
        ),
        (
            f"{{name: a, apprise: '{MAIL}', secret: whsec_abc, headers: {{X-A: b}}}}",
            "webhooks[0]: headers, secret: only for url: targets, not apprise:",
        ),
        (
            "{name: a, apprise: 'slack://TokenA0001/TokenBSecret'}",
            "webhooks[0].apprise: Apprise cannot use this slack:// URL slack://***/***: "
            "An invalid Slack (third) Token (None) was specified.",
        ),
        ("{name: a, apprise: 'bogus://x'}", "webhooks[0].apprise: bogus:// is not a service"),
        ("{name: a, url: 'http://h.example/', batch: 0.5s}", "webhooks[0].batch: expected"),
        ("{name: a, url: 'http://h.example/', batch: 2h}", "webhooks[0].batch: expected"),
    ],
)
def test_bad_targets_are_refused_at_load(entry: str, expected: str) -> None:
    assert expected in error(f"webhooks:\n  - {entry}\n")


def test_apprise_is_imported_only_for_an_apprise_target() -> None:
    probe = (
        "import sys; from monitor.config import parse_config\n"
        "parse_config(\"webhooks:\\n  - {name: a, url: 'http://h.example/', batch: 5s}\\n\")\n"
        "assert 'apprise' not in sys.modules, 'url: imported apprise'\n"
        f"parse_config(\"webhooks:\\n  - {{name: a, apprise: '{MAIL}'}}\\n\")\n"
        "assert 'apprise' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_check_with_a_config_naming_an_apprise_target_does_not_import_apprise(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], tmp_path: Path
) -> None:
    repo = unique_repo("lean")
    pusher.push_image(repo, "v1", "oci")
    path = tmp_path / "regmon.yaml"
    path.write_text(f"webhooks:\n  - {{name: mail, apprise: '{MAIL}'}}\n")
    command = ["-X", "importtime", "-m", "monitor", "check", "--config", str(path)]
    proc = subprocess.run(
        [sys.executable, *command, f"{registry.host}/{repo}:v1"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-test"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "apprise" not in imported
    # The form is still checked; the full check is for the commands that send.
    with pytest.raises(ConfigError) as caught:
        load_config_text(tmp_path, "webhooks:\n  - {name: mail, apprise: 'no-scheme'}\n")
    assert str(caught.value).endswith("webhooks[0].apprise: expected an Apprise URL (scheme://…)")


def load_config_text(folder: Path, text: str) -> object:
    path = folder / "other.yaml"
    path.write_text(text)
    return load_config(path, channels=False)
