"""scripts/bootstrap (sourced by scripts/run and scripts/test) on a fresh machine.

"Fresh" is staged around the real script, a real interpreter and a real pip:
the Python it picks has no ``ensurepip`` (as Debian's without python3.X-venv:
here a shadowing module on PYTHONPATH) until a stand-in ``apt-get`` "installs"
the package (and a stand-in ``id`` says root). The project is a probe with
no dependencies whose ``regmon`` command prints its arguments, installed with
no index and no build isolation, so nothing is fetched. apt-get is faked
because the suite must not install Debian packages to test a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT

pytestmark = pytest.mark.slow

PROBE_PYPROJECT = """\
[build-system]
requires = []
build-backend = "probe_backend"
backend-path = ["."]

[project]
name = "regmon-bootstrap-probe"
version = "0"
"""

PROBE = """\
import sys


def main():
    print("regmon", *sys.argv[1:])
"""

# A PEP 517 backend in a few lines, so the probe installs with no setuptools or
# wheel package present (Python 3.12+ venvs have neither) and nothing fetched.
PROBE_BACKEND = """\
import base64, hashlib, os, zipfile

DIST = "regmon_bootstrap_probe-0"
FILES = {
    "probe.pth": os.path.dirname(os.path.abspath(__file__)) + "\\n",
    DIST + ".dist-info/METADATA": (
        "Metadata-Version: 2.1\\nName: regmon-bootstrap-probe\\nVersion: 0\\n"
    ),
    DIST + ".dist-info/WHEEL": (
        "Wheel-Version: 1.0\\nGenerator: probe\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    ),
    DIST + ".dist-info/entry_points.txt": "[console_scripts]\\nregmon = probe:main\\n",
}


def _wheel(directory):
    name = DIST + "-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(directory, name), "w") as wheel:
        for path, text in FILES.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
            wheel.writestr(path, data)
        record.append(DIST + ".dist-info/RECORD,,")
        wheel.writestr(DIST + ".dist-info/RECORD", "\\n".join(record) + "\\n")
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory)
"""


def stage(tmp_path: Path, uid: int = 0) -> tuple[Path, Path, dict[str, str]]:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for script in ("bootstrap", "run"):
        shutil.copy2(ROOT / "scripts" / script, checkout / "scripts" / script)
    (checkout / "pyproject.toml").write_text(PROBE_PYPROJECT, encoding="utf-8")
    (checkout / "probe.py").write_text(PROBE, encoding="utf-8")
    (checkout / "probe_backend.py").write_text(PROBE_BACKEND, encoding="utf-8")
    fake = tmp_path / "fake"
    shadow = fake / "no-ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "ensurepip.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n", encoding="utf-8"
    )
    bin_dir = fake / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text(
        "#!/bin/sh\n"
        f'[ -e "{fake}/venv-installed" ] || export PYTHONPATH="{shadow}"\n'
        f'exec "{sys.executable}" "$@"\n',
        encoding="utf-8",
    )
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{fake}/apt.log"\n'
        f'case "$*" in *install*) touch "{fake}/venv-installed";; esac\n',
        encoding="utf-8",
    )
    # apt_install runs only as root; this test need not be.
    fake_id = bin_dir / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n", encoding="utf-8")
    for script in (python, apt_get, fake_id):
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "REGMON"))}
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        PYTHON=str(python),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        # pip's negation: "0" turns build isolation off (the probe's backend needs nothing).
        PIP_NO_BUILD_ISOLATION="0",
    )
    return checkout, fake, env


def scripts_run(
    checkout: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / "scripts" / "run"), *args],
        cwd=checkout.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_fresh_machine_says_what_it_does_and_nothing_that_looks_like_a_failure(
    tmp_path: Path,
) -> None:
    checkout, fake, env = stage(tmp_path)
    venv_package = "python{}.{}-venv".format(*sys.version_info[:2])
    first = scripts_run(checkout, env, "--log-level", "debug")
    venv = checkout / ".venv"
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"regmon: installing {venv_package} (needed to create a virtualenv)",
        f"regmon: creating the virtualenv {venv} with {fake / 'bin' / 'python3'}",
        f"regmon: installing regmon into {venv} (the first time takes about a minute)",
    ]
    # Extra arguments reach `regmon run`, not the bootstrap.
    assert first.stdout == "regmon run --config config/regmon.yaml --log-level debug\n"
    assert (fake / "apt.log").read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {venv_package}",
    ]
    assert (venv / ".regmon-installed").is_file()

    again = scripts_run(checkout, env)
    assert (again.returncode, again.stderr) == (0, ""), "a second run is silent"
    assert again.stdout == "regmon run --config config/regmon.yaml\n"


def test_fresh_machine_without_root_says_what_to_install(tmp_path: Path) -> None:
    checkout, fake, env = stage(tmp_path, uid=1000)
    venv_package = "python{}.{}-venv".format(*sys.version_info[:2])
    result = scripts_run(checkout, env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"regmon: missing {venv_package}: install them (sudo apt-get install -y {venv_package}) "
        "or run this as root\n"
    )
    assert not (fake / "apt.log").exists()
    assert not (checkout / ".venv").exists()
