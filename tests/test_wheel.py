"""A wheel built from this checkout works on its own: grammar inside, seed policy compiles."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: hatchling comes with the test extra, so this needs no network.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (found,) = out.glob("keras_policy-*.whl")
    return found


def test_wheel_ships_the_grammar_and_type_marker(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "policy/policy.lark" in names
    assert "policy/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_in_a_fresh_venv_compiles_the_seed_policy(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # The dependencies (lark, keras, tensorflow) come from this environment, appended after the
    # fresh venv's own site-packages, so `policy` itself can only come from the wheel.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import policy, sys\n"
        "from importlib import resources\n"
        "assert policy.__file__.startswith(sys.prefix), policy.__file__\n"
        "assert resources.files('policy').joinpath('policy.lark').is_file()\n"
        "cbs = policy.compile_policy('stop when val_loss not improving for 3; save best on val_loss min')\n"
        "print(sorted(type(c).__name__ for c in cbs))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "EarlyStopping" in out.stdout and "ModelCheckpoint" in out.stdout
