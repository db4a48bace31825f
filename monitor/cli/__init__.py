"""The ``regmon`` command line, one module a job:

    base      the group, exit codes, ``--config``, one-line errors
    check     ``check`` and ``wait`` and their output (the lean path)
    views     ``status`` and ``history``
    service   ``config validate``, ``run``, ``db upgrade``, ``webhook test``

Heavy modules are imported inside the commands so that ``regmon check`` starts
fast (no SQLAlchemy, APScheduler or Starlette).
"""

from monitor.cli import check, service, views
from monitor.cli.base import main

__all__ = ["check", "main", "service", "views"]
