"""Package layout; everything else is in pyproject.toml.

The Alembic tree stays at the top-level ``migrations/`` (where ``alembic.ini``
and developers expect it) and is shipped inside the package as
``monitor/migrations``, so a wheel, ``pip install .``, pipx and the container
carry it. ``monitor.store.engine.migrations_dir`` finds it in either place.
pyproject.toml cannot express this: its ``packages.find`` cannot map one
package to another folder, and a fixed list would silently drop every new
subpackage.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["monitor", "monitor.*"]),
        "monitor.migrations",
        "monitor.migrations.versions",
    ],
    package_dir={"monitor.migrations": "migrations"},
    package_data={
        "monitor": ["py.typed"],
        "monitor.migrations": ["script.py.mako"],
    },
)
