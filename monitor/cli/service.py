"""Running and operating the service: ``config validate``, ``run``, ``db upgrade``,
``webhook test``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from monitor.cli.base import CONFIG_OPTION, EXIT_ERROR, EXIT_OK, engine_for, guard, main

if TYPE_CHECKING:
    from monitor.config import Config

__all__ = ["config", "db", "run", "webhook"]


@main.group()
def config() -> None:
    """Configuration files."""


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@guard
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
    found = ""
    if cfg.sources:
        from monitor.sources.all import sources_for
        from monitor.sources.deployment import read_sources

        # As regmon run reads them at start: a file it would refuse is refused here.
        sources = sources_for(cfg)[1:]
        read_sources(sources)
        images = sum(len(source.targets()) for source in sources)
        found = f", {images} images in {len(sources)} sources"
    click.echo(f"{file}: ok ({len(cfg.watch)} watches, {len(cfg.webhooks)} webhooks{found})")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), **CONFIG_OPTION)
@guard
def run(config_path: str) -> None:
    """The service: scheduler, store, metrics and HTTP server."""
    from monitor.runtime.startup import pause_collector, return_large_blocks

    pause_collector()  # from before the imports: they are start-up too
    return_large_blocks()
    from monitor.service import run_service

    run_service(config_path)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--config", "config_path", **CONFIG_OPTION)
@guard
def db_upgrade(config_path: str) -> None:
    """Apply Alembic migrations up to the newest (``run`` does this too)."""
    _, engine = engine_for(config_path, migrate=True)
    engine.dispose()
    click.echo("database is at the newest schema")


@main.group()
def webhook() -> None:
    """Webhook receivers."""


@webhook.command("test")
@click.argument("name")
@click.option("--config", "config_path", **CONFIG_OPTION)
@guard
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
