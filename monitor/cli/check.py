"""``regmon check`` and ``regmon wait``, and their output. Kept lean: no SQLAlchemy,
APScheduler, Starlette or pydantic unless ``--config`` is given."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from monitor.cli.base import CONFIG_ENV, duration, guard, main, parse_refs

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.domain import CheckResult
    from monitor.reference import ImageReference
    from monitor.sources import FoundImage

__all__ = ["check", "exit_code", "wait"]


def _load_config(path: str | None) -> Config | None:
    """The config for credentials; None without ``--config`` (keeps pydantic out of ``check``).

    Nothing is sent from here: ``apprise:`` URLs are checked for their form only.
    """
    if path is None:
        return None
    from monitor.config import load_config

    return load_config(path, channels=False)


def _parse_platforms(platforms: Sequence[str]) -> list[str]:
    if not platforms:
        return []  # platform selection stays unimported
    from monitor.registry.platforms import Platform

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


def _settle_collector() -> None:
    """Collect cyclic garbage again if the process entry paused the collector
    (``monitor.__main__``), for what runs long: many references, ``wait``'s polls."""
    from monitor.runtime.startup import settle_collector

    settle_collector()


# Up to this many references, `check` uses httpx on asyncio's streams: it imports
# ~0.1 s faster than aiohttp, which only pays off over many requests (bench/README.md).
SMALL_CHECK = 8


def _transport_for(count: int) -> Any:
    if count > SMALL_CHECK:
        return None  # the default: httpx-aiohttp
    from monitor.registry.streams import stream_transport

    return stream_transport


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
        if len(refs) > SMALL_CHECK:
            _settle_collector()
        return list(await asyncio.gather(*(one(ref) for ref in refs)))


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
@guard
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

    if as_json and output_format not in (None, "json"):
        raise click.BadParameter("--json is --format json", param_hint="--format")
    chosen = "json" if as_json else output_format or "text"
    budget = duration(timeout, "--timeout")
    wanted = _parse_platforms(platforms)
    refs = parse_refs(references)
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
@guard
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

    total = duration(timeout, "--timeout")
    every = duration(interval, "--interval")
    wanted = _parse_platforms(platforms)
    (ref,) = parse_refs([reference])
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
            # Never less than one pause: the check the last pause ends at the deadline
            # would get nothing and report a false `error (timeout)` (exit 3, not 1) from
            # any registry that takes more than a moment to answer.
            budget = max(min(per_check, remaining), min(per_check, every, total), 0.1)
            result = await check_reference(client, ref, platforms=platforms, budget=budget)
            _settle_collector()  # the first check has imported what the next ones use
            remaining = deadline - time.monotonic()
            if result.status is Status.PRESENT or remaining <= 0:
                return result
            pause = min(every, remaining)
            if progress is not None:
                # Whole seconds for people, unless they asked for sub-second polls.
                progress(result, math.ceil(pause) if every >= 1 else pause)
            await asyncio.sleep(pause)
