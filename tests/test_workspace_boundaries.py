"""The package graph is enforced: declared dependencies only, light packages stay light."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
PACKAGE_NAMES = sorted(p.name for p in PACKAGES.iterdir() if (p / "pyproject.toml").exists())

# After importing every module of a light package in a fresh interpreter, the third-party
# top-level modules loaded must be within its allowlist (parse, pack, schema) or outside its
# deny list (match).
RUNTIME_ALLOW: dict[str, set[str]] = {
    "coordexp-parse": set(),
    "coordexp-pack": set(),
    # `cython_runtime` is the pseudo-module every Cython extension registers (PyYAML's _yaml).
    "coordexp-schema": {"yaml", "cython_runtime"},
}
RUNTIME_DENY: dict[str, set[str]] = {"coordexp-match": {"torch", "transformers"}}
LIGHT_PACKAGES = sorted(RUNTIME_ALLOW.keys() | RUNTIME_DENY.keys())


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m is not None, req
    return _normalise(m.group(1))


def declared_distributions(package_dir: Path) -> set[str]:
    """Distributions a package declares: dependencies plus every optional extra."""
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return {_requirement_name(r) for r in reqs}


def imported_top_level_modules(src_dir: Path) -> dict[str, list[str]]:
    """Absolute imports in every module under ``src_dir``: top-level name -> 'file:line'."""
    found: dict[str, list[str]] = {}
    for path in sorted(src_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                found.setdefault(top, []).append(f"{path.relative_to(src_dir)}:{node.lineno}")
    return found


def undeclared_imports(package_dir: Path) -> list[str]:
    """Imports of workspace packages or third-party distributions not declared by the package."""
    own = package_dir.name.replace("-", "_")
    declared = declared_distributions(package_dir)
    module_to_dists = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imported_top_level_modules(package_dir / "src").items()):
        if module in sys.stdlib_module_names or module in {own, "__future__"}:
            continue
        if module.startswith("coordexp_"):
            dists = {module.replace("_", "-")}
        else:
            dists = {_normalise(d) for d in module_to_dists.get(module, [module])}
        if not dists & declared:
            problems.append(f"{module} (from {', '.join(where)}) is not declared: {sorted(dists)}")
    return problems


def loaded_modules_after_import(package_dir: Path, extra_path: Path | None = None) -> set[str]:
    """Top-level modules loaded in a fresh interpreter after importing every package module."""
    module = package_dir.name.replace("-", "_")
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"import {module} as pkg\n"
        "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def runtime_violations(package: str, loaded: set[str]) -> list[str]:
    """Loaded third-party modules that ``package`` must not pull in."""
    own = package.replace("-", "_")
    third_party = {
        m for m in loaded if m not in sys.stdlib_module_names and not m.startswith("_") and m != own
    }
    if package in RUNTIME_ALLOW:
        return sorted(third_party - RUNTIME_ALLOW[package])
    return sorted(third_party & RUNTIME_DENY[package])


def test_six_packages_exist() -> None:
    assert PACKAGE_NAMES == [
        "coordexp-backends",
        "coordexp-match",
        "coordexp-pack",
        "coordexp-parse",
        "coordexp-schema",
        "coordexp-train",
    ]


@pytest.mark.parametrize("package", PACKAGE_NAMES)
def test_package_imports_only_declared_distributions(package: str) -> None:
    assert undeclared_imports(PACKAGES / package) == []


@pytest.mark.parametrize("package", LIGHT_PACKAGES)
def test_light_package_loads_no_forbidden_module(package: str) -> None:
    loaded = loaded_modules_after_import(PACKAGES / package)
    assert runtime_violations(package, loaded) == []


def _copy_package(package: str, dst: Path) -> Path:
    copy = dst / package
    shutil.copytree(PACKAGES / package, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    return copy


def test_undeclared_import_is_caught_in_a_temporary_module(tmp_path: Path) -> None:
    copy = _copy_package("coordexp-parse", tmp_path)
    (copy / "src" / "coordexp_parse" / "_tmp_bad.py").write_text("import numpy\n")
    problems = undeclared_imports(copy)
    assert len(problems) == 1
    assert problems[0].startswith("numpy (from coordexp_parse/_tmp_bad.py:1)")


def test_forbidden_runtime_import_is_caught_in_a_temporary_module(tmp_path: Path) -> None:
    copy = _copy_package("coordexp-parse", tmp_path)
    (copy / "src" / "coordexp_parse" / "_tmp_bad.py").write_text("import yaml\n")
    loaded = loaded_modules_after_import(copy, extra_path=copy / "src")
    assert "yaml" in runtime_violations("coordexp-parse", loaded)


@pytest.mark.parametrize("package", PACKAGE_NAMES)
def test_package_metadata_is_consistent(package: str) -> None:
    project = tomllib.loads((PACKAGES / package / "pyproject.toml").read_text())["project"]
    module = __import__(package.replace("-", "_"))
    assert module.__version__ == project["version"]
    src = PACKAGES / package / "src" / package.replace("-", "_")
    assert (src / "py.typed").exists()
    readme = (PACKAGES / package / "README.md").read_text()
    assert "## Changelog" in readme
    assert f"### {project['version']}" in readme
