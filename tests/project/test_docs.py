"""The user reference in docs/ covers what the code has, and its links lead somewhere.

Users have the repository, not the project's contract: no user-facing file
cites it, and every config key, metric, event type and command the code
defines is named on its docs page.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel
from support.paths import ROOT

from monitor.cli import main
from monitor.config import Config, Listen
from monitor.metrics import METRIC_NAMES
from monitor.records import EventType

DOCS = ROOT / "docs"
USER_FILES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "config" / "regmon.yaml", *DOCS.glob("*.md")]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_slug(line.lstrip("#")) for line in lines if line.startswith("#")}


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_user_file_cites_the_contract(path: Path) -> None:
    assert "SPEC" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target}"
        if anchor:
            assert anchor in _anchors(linked), f"{path.name}: {target}"


def test_readme_points_at_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f"](docs/{page.name})" in readme, page.name


def _keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        for candidate in getattr(info.annotation, "__args__", ()) or (info.annotation,):
            inner = getattr(candidate, "__args__", (candidate,))
            for kind in (candidate, *inner):
                # Listen is written as one string, host:port: its fields are no keys.
                if isinstance(kind, type) and issubclass(kind, BaseModel) and kind is not Listen:
                    keys |= _keys(kind)
    return keys


def test_every_config_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = _keys(Config)
    assert {"username", "secret_file", "missing_after", "level", "platforms"} <= keys
    documented = set(re.findall(r"`([a-z_]+)", text)) | set(re.findall(r"`log\.([a-z_]+)", text))
    assert sorted(keys - documented) == []


def test_every_metric_is_documented() -> None:
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    assert sorted(name for name in METRIC_NAMES if f"`{name}" not in text) == []


def test_every_event_type_is_documented() -> None:
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    assert sorted(str(kind) for kind in EventType if f"`{kind}`" not in text) == []


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{full} "))
        else:
            names.append(full)
    return names


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = _commands(main)
    assert {"check", "run", "db upgrade", "webhook test"} <= set(commands)
    assert sorted(c for c in commands if f"regmon {c}" not in text) == []
