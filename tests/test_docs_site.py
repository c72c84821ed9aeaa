"""The reference site for plugin authors (mkdocs + mkdocstrings): it builds with strict warnings, and it documents
every hook and every name of the contract, generated from the docstrings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pi_framework import contract, hookspecs

ROOT = Path(__file__).parents[1]


def test_the_site_builds_strict_with_the_tutorial_every_hook_and_the_contract(tmp_path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    tutorial = (site / "tutorial" / "index.html").read_text()
    assert "Write a source" in tutorial and "register_sources" in tutorial
    hooks = (site / "reference" / "hookspecs" / "index.html").read_text()
    specs = [name for name, value in vars(hookspecs).items() if hasattr(value, "pi_framework_spec")]
    assert specs, "the hook specs were found"
    assert [name for name in specs if f'id="pi_framework.hookspecs.{name}"' not in hooks] == []
    reference = (site / "reference" / "contract" / "index.html").read_text()
    assert [name for name in contract.__all__ if name not in reference] == []
