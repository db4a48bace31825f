"""A built wheel, installed into a new virtualenv outside the checkout, runs the service.

The wheel is built from a copy of exactly the files the Docker build context
admits (.dockerignore's allow-list), with the suite's own setuptools and no
index (``--no-build-isolation --no-index``: nothing is fetched). The new venv
is made ``--without-pip``; the wheel goes in with this interpreter's pip
(``pip --python``), so its console script is the new venv's own. Its
dependencies come from this suite's environment through a ``.pth`` file:
paths from a ``.pth`` come after the venv's own site-packages, so the wheel's
``monitor`` is the one imported, and the test proves it. Every command runs
from a folder outside the checkout, without PYTHONPATH.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import site
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.faults import free_port
from support.images import ImagePusher
from support.paths import ROOT
from support.registry import RegistryServer
from support.wait import wait_for

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    build_seconds: float
    install_seconds: float

    @property
    def regmon(self) -> str:
        return str(self.venv / "bin" / "regmon")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def build_context(dest: Path) -> Path:
    """Copy what .dockerignore lets into a Docker build: the wheel needs no more."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    excluded = [line.removeprefix("**/") for line in lines if line.startswith("**/")]
    dest.mkdir()
    for pattern in allowed:
        for source in ROOT.glob(pattern):
            target = dest / source.relative_to(ROOT)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(*excluded))
            elif not any(fnmatch.fnmatch(source.name, ex) for ex in excluded):
                shutil.copy2(source, target)
    return dest


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (it would import the checkout), no host docker credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["DOCKER_CONFIG"] = "/nonexistent-regmon-test"
    env.pop("DOCKER_AUTH_CONFIG", None)
    return env


def run(
    args: list[str], cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    context = build_context(base / "src")
    began = time.monotonic()
    ok(
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--quiet",
                "--wheel-dir",
                str(base / "dist"),
                str(context),
            ],
            cwd=base,
        )
    )
    built = time.monotonic()
    (wheel,) = (base / "dist").glob("regmon-*.whl")
    venv = base / "venv"
    ok(run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base))
    ok(
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--no-deps",
                "--no-index",
                "--quiet",
                str(wheel),
            ],
            cwd=base,
        )
    )
    (venv_site,) = (venv / "lib").glob("python3.*/site-packages")
    (venv_site / "regmon-test-deps.pth").write_text(
        "".join(f"{path}\n" for path in site.getsitepackages()), encoding="utf-8"
    )
    done = Installed(venv, wheel, built - began, time.monotonic() - built)
    # Shown with -s: the figure the issue asks for.
    print(f"\nwheel build {done.build_seconds:.2f} s, venv + install {done.install_seconds:.2f} s")
    return done


def test_wheel_carries_the_whole_package_and_the_migrations(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    sources = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "monitor").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources - names == set()
    migrations = {
        "monitor/" + str(path.relative_to(ROOT))
        for path in (ROOT / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "monitor/migrations/env.py" in migrations
    assert migrations - names == set()
    assert not any(name.startswith(("migrations/", "tests/")) for name in names)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is neither the checkout nor the venv."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


def test_installed_package_is_imported_not_the_checkout(
    installed: Installed, elsewhere: Path
) -> None:
    code = (
        "import monitor, monitor.store.engine as e\n"
        "print(monitor.__file__)\nprint(e.migrations_dir())"
    )
    module, migrations = ok(run([installed.python, "-c", code], cwd=elsewhere)).splitlines()
    (venv_site,) = (installed.venv / "lib").glob("python3.*/site-packages")
    assert Path(module) == venv_site / "monitor" / "__init__.py"
    assert Path(migrations) == venv_site / "monitor" / "migrations"


def test_an_install_without_migrations_says_so_in_one_line(
    installed: Installed, elsewhere: Path, tmp_path: Path
) -> None:
    (venv_site,) = (installed.venv / "lib").glob("python3.*/site-packages")
    broken = tmp_path / "broken"
    shutil.copytree(
        venv_site / "monitor", broken / "monitor", ignore=shutil.ignore_patterns("migrations")
    )
    config = tmp_path / "regmon.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'regmon.db'}\nwatch: []\n", encoding="utf-8"
    )
    result = run(
        [installed.python, "-m", "monitor", "db", "upgrade", "--config", str(config)],
        cwd=elsewhere,
        env={"PYTHONPATH": str(broken)},
    )
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        "regmon: the database migrations are missing from this installation "
        f"({broken / 'monitor' / 'migrations'}); reinstall regmon\n"
    )


@pytest.fixture
def regmon_run() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed afterwards if still running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_db_upgrade_run_status_history_from_another_folder(
    installed: Installed,
    elsewhere: Path,
    tmp_path: Path,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: object,
    regmon_run: list[subprocess.Popen[str]],
) -> None:
    repo = unique_repo()  # type: ignore[operator]
    image = pusher.push_image(repo, "v1")
    ref = f"{registry.host}/{repo}:v1"
    port = free_port()
    config = tmp_path / "etc" / "regmon.yaml"
    config.parent.mkdir()
    # An absolute SQLite path: four slashes.
    database = tmp_path / "data" / "regmon.db"
    config.write_text(
        f"database: sqlite:///{database}\n"
        f"listen: 127.0.0.1:{port}\n"
        "defaults: {interval: 1m, jitter: 0%}\n"
        f"watch:\n  - image: {ref}\n",
        encoding="utf-8",
    )
    assert ok(run([installed.regmon, "db", "upgrade", "--config", str(config)], cwd=elsewhere)) == (
        "database is at the newest schema\n"
    )
    assert database.is_file()

    with (tmp_path / "run.log").open("w") as log:
        proc = subprocess.Popen(
            [installed.regmon, "run", "--config", str(config)],
            cwd=elsewhere,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    regmon_run.append(proc)
    url = f"http://127.0.0.1:{port}"

    def log_text() -> str:
        return (tmp_path / "run.log").read_text(errors="replace")

    def checked() -> bool:
        code = proc.poll()
        assert code is None, f"regmon run exited {code}\n{log_text()}"
        try:
            ready = httpx.get(f"{url}/readyz", timeout=1.0)
            images = httpx.get(f"{url}/api/v1/images", timeout=1.0)
        except httpx.TransportError:
            return False
        if ready.status_code != 200:
            return False
        return any(
            row.get("status") == "present" and row.get("digest") == image.digest
            for row in images.json()["images"]
        )

    wait_for(checked, timeout=30, interval=0.1, message=f"{ref} checked\n{log_text()}")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, log_text()
    assert "Traceback" not in log_text()

    status = ok(run([installed.regmon, "status", "--config", str(config)], cwd=elsewhere))
    assert status == f"present  {ref}  {image.digest}\n"
    history = ok(run([installed.regmon, "history", ref, "--config", str(config)], cwd=elsewhere))
    lines = history.splitlines()
    assert lines[0] == ref
    assert lines[1].endswith(f"  present  {image.digest}")
    assert list(elsewhere.iterdir()) == [], "nothing written to the working directory"
