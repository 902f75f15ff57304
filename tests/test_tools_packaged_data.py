"""The data-driven families work from an installed (non-editable) copy of the package.

Builds a wheel from the project's own ``pyproject.toml``, installs it into a scratch
directory and loads every data family there in a fresh interpreter whose ``PYTHONPATH``
is only that directory, run from outside the repository with ``DARA_DATA_DIR`` unset: the
logs must come from the package data, nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

_PROBE = r"""
import sys
from pathlib import Path
import tools
from tools.envs import make_envs
from tools.envs.spend_logs import data_dir
target = Path(sys.argv[1]).resolve()
assert Path(tools.__file__).resolve().is_relative_to(target), tools.__file__
assert data_dir().resolve().is_relative_to(target), data_dir()
for family, channels in (("robyn", 5), ("meridian-national", 4), ("meridian-geo", 4)):
    e = make_envs(family, 3, seed=0)
    assert e.periods == channels and (e.budget > 0).all(), family
    print(family, e.periods)
"""


def _copy_sources(dst: Path) -> None:
    """The files the build reads; shipped adapters and training runs are left out (large,
    and not what this test is about)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "adapters", "runs")
    for pkg in ("graph", "tools", "policies", "training"):
        shutil.copytree(REPO / pkg, dst / pkg, ignore=ignore)


def test_data_families_load_from_an_installed_wheel(tmp_path):
    src, wheels, target, elsewhere = (tmp_path / d for d in ("src", "wheels", "target", "cwd"))
    for d in (src, wheels, elsewhere):
        d.mkdir()
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=elsewhere, capture_output=True)
    (wheel,) = wheels.glob("dara-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, cwd=elsewhere, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DARA_DATA_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", _PROBE, str(target)], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["robyn", "5", "meridian-national", "4", "meridian-geo", "4"]
