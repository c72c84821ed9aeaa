"""The import layering (``[tool.importlinter]`` in pyproject.toml, checked by ``lint-imports`` in ``./dev test``)
names every module of the package, so a new module cannot sit outside it; and it holds."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pi_framework

ROOT = Path(__file__).parents[1]


def layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_module_of_the_package_is_in_a_layer() -> None:
    package = Path(pi_framework.__file__).parent
    modules = {
        f"pi_framework.{path.stem if path.is_file() else path.name}"
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert modules - layered_modules() == set(), "add the new module to a layer in pyproject.toml's [tool.importlinter]"


def test_the_layers_hold() -> None:
    lint_imports = shutil.which("lint-imports") or str(Path(__file__).parents[1] / ".venv" / "bin" / "lint-imports")
    result = subprocess.run([lint_imports], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
