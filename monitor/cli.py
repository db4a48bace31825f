"""The ``regmon`` command line. Heavy modules are imported inside the commands
so that ``regmon check`` starts fast (no SQLAlchemy, APScheduler or Starlette)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.domain import CheckResult
    from monitor.reference import ImageReference

__all__ = ["main"]

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

# SPEC §3: without --config, this names the config of every command that takes one.
CONFIG_ENV = "REGMON_CONFIG"
CONFIG_OPTION: dict[str, Any] = {
    "envvar": CONFIG_ENV,
    "show_envvar": True,
    "default": "config/regmon.yaml",
    "show_default": True,
    "help": "Config file.",
}


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"regmon: {message}", err=True)
    sys.exit(code)


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn regmon's own errors into a one-line message and an exit code; no tracebacks."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from monitor.errors import RegmonError, UsageError

        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except RegmonError as exc:
            _fail(str(exc), EXIT_ERROR)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _duration(text: str, option: str) -> float:
    from monitor.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _load_config(path: str | None) -> Config | None:
    """The config for credentials; None without ``--config`` (keeps pydantic out of ``check``).

    Nothing is sent from here: ``apprise:`` URLs are checked for their form only.
    """
    if path is None:
        return None
    from monitor.config import load_config

    return load_config(path, channels=False)


def _parse_refs(texts: Sequence[str]) -> list[ImageReference]:
    from monitor.reference import parse_reference

    return [parse_reference(text) for text in texts]


def _parse_platforms(platforms: Sequence[str]) -> list[str]:
    from monitor.registry.manifests import Platform

    for text in platforms:
        try:
            Platform.parse(text)  # the config's platforms: use it too
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--platform") from None
    return [text.strip() for text in platforms]


def exit_code(results: Sequence[CheckResult]) -> int:
    from monitor.report import exit_code as code

    return code(results)


def _print_results(results: Sequence[CheckResult], as_json: bool) -> None:
    from monitor.domain import Status
    from monitor.report import result_json

    for result in results:
        if as_json:
            click.echo(json.dumps(result_json(result), sort_keys=False))
            continue
        click.echo(f"{result.status!s:<7}  {result.reference}  {result.summary}")
        if result.status is Status.PRESENT and result.platforms:
            for platform, digest in result.platforms.items():
                click.echo(f"{'':<7}    {platform}  {digest}")
        if result.status is Status.ERROR and result.detail:
            click.echo(f"regmon: {result.reference}: {result.detail}", err=True)


# Up to this many references, `check` uses httpx's own connection pool: it imports
# ~90 ms faster than aiohttp, which only pays off over many requests (bench/README.md).
SMALL_CHECK = 8


def _transport_for(count: int) -> Any:
    if count > SMALL_CHECK:
        return None  # the default: httpx-aiohttp
    from monitor.registry.transport import httpx_transport

    return httpx_transport


async def _check_all(
    config: Config | None,
    refs: Sequence[ImageReference],
    platforms: Sequence[str],
    budget: float,
) -> list[CheckResult]:
    import asyncio

    from monitor.checker import check_reference, client_from_config

    async def one(ref: ImageReference) -> CheckResult:
        # --timeout bounds each check from when it gets one of the registry's slots
        # (and the transport is built); see check_reference.
        async with client.slot(ref):
            return await check_reference(client, ref, platforms=platforms, budget=budget)

    async with client_from_config(config, transport_factory=_transport_for(len(refs))) as client:
        return list(await asyncio.gather(*(one(ref) for ref in refs)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="regmon", prog_name="regmon")
def main() -> None:
    """Watch container image tags in OCI / Docker Registry v2 registries."""


@main.command()
@click.argument("references", nargs=-1)
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="PATH",
    help="Deployment file or folder (compose, manifests, Dockerfile; - for stdin).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "github", "junit"]),
    help="text (default), json (one object per reference), github annotations, junit XML.",
)  # fmt: skip
@click.option("--require-digest", is_flag=True, help="A reference not pinned by digest fails.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="Config with registry credentials.",
)
@click.option("--platform", "platforms", multiple=True, help="os/arch[/variant] to resolve.")
@click.option("--timeout", default="10s", show_default=True, help="Budget per reference.")
@_guard
def check(
    references: tuple[str, ...],
    files: tuple[str, ...],
    as_json: bool,
    output_format: str | None,
    require_digest: bool,
    config_path: str | None,
    platforms: tuple[str, ...],
    timeout: str,
) -> None:
    """Does each image exist, and what is its digest?

    Exit 0 when every reference is present, 1 when one is missing or denied
    (or not pinned, with --require-digest), 3 when one could not be checked,
    2 for a usage error.
    """
    import asyncio

    from monitor.errors import UsageError
    from monitor.report import exit_code as check_exit_code
    from monitor.report import gather, render
    from monitor.sources import FoundImage

    if as_json and output_format not in (None, "json"):
        raise click.BadParameter("--json is --format json", param_hint="--format")
    chosen = "json" if as_json else output_format or "text"
    budget = _duration(timeout, "--timeout")
    wanted = _parse_platforms(platforms)
    refs = _parse_refs(references)
    found: list[FoundImage] = []
    if files:
        from monitor.sources.files import images_in_paths

        stdin = sys.stdin.buffer if "-" in files else None
        found = images_in_paths(files, os.environ, stdin)
    items = gather(refs, found)
    if not items:
        where = ", ".join("stdin" if name == "-" else name for name in files)
        raise UsageError(f"no image found in {where}" if files else "give REFERENCE or -f PATH")
    config = _load_config(config_path)
    results = asyncio.run(_check_all(config, [item.reference for item in items], wanted, budget))
    out, errors = render(chosen, items, results, require_digest=require_digest)
    click.echo(out, nl=False)
    for line in errors:
        click.echo(line, err=True)
    sys.exit(check_exit_code(results, require_digest))


@main.command()
@click.argument("reference")
@click.option("--timeout", default="10m", show_default=True, help="Give up after this long.")
@click.option("--interval", default="10s", show_default=True, help="Time between checks.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="Config with registry credentials.",
)
@click.option("--platform", "platforms", multiple=True, help="os/arch[/variant] to resolve.")
@click.option("--json", "as_json", is_flag=True, help="Print the last result as JSON.")
@_guard
def wait(
    reference: str,
    timeout: str,
    interval: str,
    config_path: str | None,
    platforms: tuple[str, ...],
    as_json: bool,
) -> None:
    """Wait until an image is present (for deploy pipelines).

    Exit 0 once present; when the timeout passes, 1 if the last check was
    missing/denied, 3 if it was an error.
    """
    import asyncio

    from monitor.domain import Status
    from monitor.durations import format_duration

    total = _duration(timeout, "--timeout")
    every = _duration(interval, "--interval")
    wanted = _parse_platforms(platforms)
    (ref,) = _parse_refs([reference])
    config = _load_config(config_path)
    progress = _wait_progress if sys.stderr.isatty() else None
    result = asyncio.run(_wait(config, ref, wanted, total, every, progress))
    _print_results([result], as_json)
    if result.status is not Status.PRESENT:
        click.echo(
            f"timed out after {format_duration(total)}: last status {_status_text(result)}",
            err=True,
        )
    sys.exit(exit_code([result]))


def _status_text(result: CheckResult) -> str:
    """``missing (manifest unknown)``, ``error (unreachable)``."""
    return f"{result.status} ({result.summary})"


def _wait_progress(result: CheckResult, next_try: float) -> None:
    from monitor.durations import format_duration

    click.echo(
        f"waiting for {result.reference}: {_status_text(result)}, "
        f"next try in {format_duration(next_try)}",
        err=True,
    )


async def _wait(
    config: Config | None,
    ref: ImageReference,
    platforms: Sequence[str],
    total: float,
    every: float,
    progress: Callable[[CheckResult, float], None] | None = None,
) -> CheckResult:
    import asyncio
    import contextlib
    import math
    import time

    from monitor.checker import check_reference, client_from_config, registry_settings
    from monitor.domain import Status
    from monitor.errors import RegmonError

    async with client_from_config(config, transport_factory=_transport_for(1)) as client:
        # --timeout measures the wait, not process setup (imports, TLS context).
        with contextlib.suppress(RegmonError):  # the first check reports it
            client.prepare(ref.api_host)
        deadline = time.monotonic() + total
        while True:
            remaining = deadline - time.monotonic()
            per_check = registry_settings(config, ref.host_key).timeout
            budget = max(min(per_check, remaining), 0.1)
            result = await check_reference(client, ref, platforms=platforms, budget=budget)
            remaining = deadline - time.monotonic()
            if result.status is Status.PRESENT or remaining <= 0:
                return result
            pause = min(every, remaining)
            if progress is not None:
                # Whole seconds for people, unless they asked for sub-second polls.
                progress(result, math.ceil(pause) if every >= 1 else pause)
            await asyncio.sleep(pause)


@main.group()
def config() -> None:
    """Configuration files."""


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@_guard
def config_validate(file: str) -> None:
    """Load FILE, report the first problems with their key paths, exit 2 if invalid.

    Secret and CA files must be readable; docker config.json problems are warnings."""
    import logging

    from monitor.config import load_config
    from monitor.registry.credentials import docker_config_path, docker_config_problems

    cfg = load_config(file)
    # Not errors: check and run go on without these credentials, as docker does.
    for problem in docker_config_problems(docker_config_path(cfg.docker_config)):
        logging.getLogger("monitor.registry.credentials").warning("%s", problem)
    click.echo(f"{file}: ok ({len(cfg.watch)} watches, {len(cfg.webhooks)} webhooks)")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), **CONFIG_OPTION)
@_guard
def run(config_path: str) -> None:
    """The service: scheduler, store, metrics and HTTP server."""
    from monitor.service import run_service

    run_service(config_path)


def _engine_for(config_path: str, *, migrate: bool = False) -> Any:
    """The config and an engine on its database: migrated for ``db upgrade``, else only
    checked, so ``status`` with a mistyped path does not create an empty database."""
    from sqlalchemy.engine import make_url

    from monitor.config import load_config
    from monitor.errors import UsageError
    from monitor.store.engine import check_schema, make_engine, upgrade

    cfg = load_config(config_path)
    if not migrate:
        url = make_url(cfg.database)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            if not os.path.exists(url.database):
                raise UsageError(
                    f"database {url.database} does not exist yet: start regmon run "
                    "(or regmon db upgrade) with this config first"
                )
    engine = make_engine(cfg.database)
    try:
        if migrate:
            from monitor.store.lockfile import hold_sqlite_lock

            # Not under a running service on the same SQLite file: it would change
            # the schema under that process.
            lock = hold_sqlite_lock(cfg.database)
            try:
                upgrade(engine)
            finally:
                if lock is not None:
                    lock.release()
        else:
            check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return cfg, engine


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--config", "config_path", **CONFIG_OPTION)
@_guard
def status(as_json: bool, config_path: str) -> None:
    """Current state of every watched tag, from the database."""
    from monitor.config.resolve import resolve_watches
    from monitor.store.repository import load_states
    from monitor.web.views import image_summary

    cfg, engine = _engine_for(config_path)
    try:
        states = load_states(engine)
    finally:
        engine.dispose()
    rows = [image_summary(watch, states.get(watch.key)) for watch in resolve_watches(cfg)]
    if as_json:
        click.echo(json.dumps({"images": rows}, indent=2))
        return
    for row in rows:
        third = row["digest"] if row["status"] == "present" else (row["reason"] or "")
        click.echo(f"{row['status'] or 'unknown':<7}  {row['reference']}  {third}")


@main.command()
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True)
@click.option("--config", "config_path", **CONFIG_OPTION)
@_guard
def history(reference: str, as_json: bool, config_path: str) -> None:
    """Digest timeline and events of one tag."""
    from monitor.domain import Reason, Status
    from monitor.store.repository import get_state
    from monitor.web.reads import read_history

    (ref,) = _parse_refs([reference])
    key = str(ref)
    _, engine = _engine_for(config_path)
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


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--config", "config_path", **CONFIG_OPTION)
@_guard
def db_upgrade(config_path: str) -> None:
    """Apply Alembic migrations up to the newest (``run`` does this too)."""
    _, engine = _engine_for(config_path, migrate=True)
    engine.dispose()
    click.echo("database is at the newest schema")


@main.group()
def webhook() -> None:
    """Webhook receivers."""


@webhook.command("test")
@click.argument("name")
@click.option("--config", "config_path", **CONFIG_OPTION)
@_guard
def webhook_test(name: str, config_path: str) -> None:
    """Send a signed test event to webhook NAME and print the receiver's answer.

    Exit 0 when the receiver answers 2xx, 3 otherwise. The event is not stored.
    """
    import asyncio

    from monitor.config import load_config

    cfg = load_config(config_path)
    status_code, body = asyncio.run(_webhook_test(cfg, name))
    if status_code is None:  # an apprise: target; a failed send raised
        click.echo(body)
        sys.exit(EXIT_OK)
    click.echo(f"HTTP {status_code}")
    if body:
        click.echo(body)
    sys.exit(EXIT_OK if 200 <= status_code < 300 else EXIT_ERROR)


async def _webhook_test(cfg: Config, name: str) -> tuple[int | None, str]:
    import httpx

    from monitor.notify.trial import send_test
    from monitor.registry.transport import default_transport_factory

    async with httpx.AsyncClient(transport=default_transport_factory(True)) as http:
        return await send_test(cfg, name, http)
