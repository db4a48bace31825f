"""``regmon status`` and ``regmon history``: the API's views, read from the database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from monitor.cli.base import CONFIG_OPTION, engine_for, guard, main, parse_refs

if TYPE_CHECKING:
    from monitor.config import Config, Watch
    from monitor.store.repository import WatchRow

__all__ = ["history", "status"]


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--config", "config_path", **CONFIG_OPTION)
@guard
def status(as_json: bool, config_path: str) -> None:
    """Current state of every watched tag (a repository's: those it selected), from the
    database."""
    from monitor.config.resolve import resolve_repositories, resolve_watches
    from monitor.records import RepositoryState
    from monitor.sources.repository import RepositorySource
    from monitor.store.repository import active_watches, load_states
    from monitor.web.views import image_summary, repository_object

    cfg, engine = engine_for(config_path)
    try:
        states = load_states(engine)
        stored = active_watches(engine)
    finally:
        engine.dispose()
    watches = list(resolve_watches(cfg))
    repositories = []
    for repository in resolve_repositories(cfg):
        source = RepositorySource(repository)
        source.seed([row.image for row in stored if row.source == source.name])
        tags = source.targets()
        watches.extend(tags)
        shown = RepositoryState(repository.key, tuple(w.key for w in tags))
        repositories.append(repository_object(shown, states))
    seen = {watch.key for watch in watches}
    watches.extend(w for w in _file_watches(cfg, stored) if w.key not in seen)
    rows = [image_summary(watch, states.get(watch.key)) for watch in watches]
    if as_json:
        body: dict[str, object] = {"images": rows}
        if repositories:
            body["repositories"] = [
                {"repository": r["repository"], "selected": r["selected"], "tags": r["tags"]}
                for r in repositories
            ]
        click.echo(json.dumps(body, indent=2))
        return
    for row in rows:
        third = row["digest"] if row["status"] == "present" else (row["reason"] or "")
        click.echo(f"{row['status'] or 'unknown':<7}  {row['reference']}  {third}")
        if row["places"]:
            click.echo(f"         from {row['source']}: {', '.join(row['places'])}")
    for shown_repository in repositories:
        name, selected = shown_repository["repository"], shown_repository["selected"]
        click.echo(f"repository  {name}  {selected} tags")


def _file_watches(cfg: Config, stored: Sequence[WatchRow]) -> list[Watch]:
    """The images of the ``sources:`` files, each once. A source whose files do not read
    now is told on stderr and shown as the store has it (``stored``), without places."""
    from monitor.errors import InputError
    from monitor.sources.deployment import file_sources, stored_watch

    watches: list[Watch] = []
    for source in file_sources(cfg):
        try:
            source.read()
        except InputError as exc:
            click.echo(f"warning: {exc}; its watches as stored", err=True)
            watches.extend(stored_watch(row) for row in stored if row.source == source.name)
            continue
        watches.extend(source.targets())
    unique: dict[str, Watch] = {}
    for watch in watches:
        unique.setdefault(watch.key, watch)  # the first source to name a key wins
    return list(unique.values())


@main.command()
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True)
@click.option("--config", "config_path", **CONFIG_OPTION)
@guard
def history(reference: str, as_json: bool, config_path: str) -> None:
    """Digest timeline and events of one tag."""
    from monitor.domain import Reason, Status
    from monitor.store.repository import get_state
    from monitor.web.reads import read_history

    (ref,) = parse_refs([reference])
    key = str(ref)
    _, engine = engine_for(config_path)
    try:
        body = read_history(engine, key)
        state = get_state(engine, key)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    changes, events = body["history"], body["events"]
    # History rows record decided checks only: none yet may mean every check failed.
    if not changes and state is not None and state.status is Status.ERROR:
        failure = state.reason or Reason.PROTOCOL
        click.echo(f"{key}: watched, every check so far failed (error/{failure})")
    elif not changes and not events:
        click.echo(f"{key}: no history (not watched yet, or never checked)")
        return
    else:
        click.echo(f"{key}")
    for change in changes:
        third = change["digest"] or ""
        click.echo(f"  {change['recorded_at']}  {change['status']:<7}  {third}")
    if events:
        click.echo("events:")
        for event in events:
            prev = (event.get("previous") or {}).get("digest") or ""
            cur = (event.get("current") or {}).get("digest") or ""
            arrow = f"  {prev} -> {cur}" if event["type"] == "tag.changed" else ""
            reason = f"  ({event['reason']})" if event.get("reason") else ""
            click.echo(f"  {event['occurred_at']}  {event['type']}{arrow}{reason}")
