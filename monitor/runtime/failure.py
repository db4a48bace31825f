"""One line for a failure of a background part (pruner, reload, dispatcher stop)."""

from __future__ import annotations

from monitor.errors import RegmonError
from monitor.store.engine import error_line, is_database_error

__all__ = ["reason"]


def reason(exc: BaseException) -> str:
    """The store's one line for a database error, the message of a RegmonError, else repr."""
    if isinstance(exc, RegmonError) and not is_database_error(exc):
        return str(exc)
    return error_line(exc) if is_database_error(exc) else repr(exc)
