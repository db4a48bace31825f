"""What every ``regmon`` command shares: the group, exit codes, the ``--config``
option, one-line errors instead of tracebacks, argument parsing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from monitor.reference import ImageReference

__all__ = [
    "CONFIG_ENV",
    "CONFIG_OPTION",
    "EXIT_ERROR",
    "EXIT_MISSING",
    "EXIT_OK",
    "EXIT_USAGE",
    "duration",
    "engine_for",
    "fail",
    "guard",
    "main",
    "parse_refs",
]

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


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"regmon: {message}", err=True)
    sys.exit(code)


def guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn regmon's own errors into a one-line message and an exit code; no tracebacks."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from monitor.errors import RegmonError, UsageError

        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except RegmonError as exc:
            fail(str(exc), EXIT_ERROR)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def duration(text: str, option: str) -> float:
    from monitor.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def parse_refs(texts: Sequence[str]) -> list[ImageReference]:
    from monitor.reference import parse_reference

    return [parse_reference(text) for text in texts]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="regmon", prog_name="regmon")
def main() -> None:
    """Watch container image tags in OCI / Docker Registry v2 registries."""


def engine_for(config_path: str, *, migrate: bool = False) -> Any:
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
