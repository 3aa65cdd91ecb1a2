"""Every package builds a wheel; the light wheels install and import alone in an empty venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
UV = shutil.which("uv")

pytestmark = pytest.mark.skipif(UV is None, reason="uv is not on PATH")


def _uv(*args: str, cwd: Path = ROOT) -> str:
    assert UV is not None
    done = subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"uv {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for package in PACKAGES:
        _uv("build", "--package", package, "--wheel", "--out-dir", str(out), "--quiet")
    return out


def test_every_package_builds_a_wheel(wheel_dir: Path) -> None:
    built = sorted(w.name.split("-")[0] for w in wheel_dir.glob("*.whl"))
    assert built == sorted(p.replace("-", "_") for p in PACKAGES)


@pytest.mark.parametrize("package", ["coordexp-parse", "coordexp-pack"])
def test_stdlib_only_wheel_installs_and_imports_alone(
    package: str, wheel_dir: Path, tmp_path: Path
) -> None:
    (wheel,) = wheel_dir.glob(f"{package.replace('-', '_')}-*.whl")
    venv = tmp_path / "venv"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    _uv("venv", "--quiet", "--python", python_version, str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "--quiet", "--python", str(python), str(wheel))
    listed = _uv("pip", "list", "--python", str(python), "--format", "freeze")
    assert [line.split("==")[0] for line in listed.split()] == [package]
    module = package.replace("-", "_")
    code = f"import {module}, sys; print({module}.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.1.0"
