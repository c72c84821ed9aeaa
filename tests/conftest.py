"""Fixtures for the core's own tests: the test plugins in tests/plugins installed as real distributions."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that pip-installs the test plugins (``test_plugins_site``) is ``slow``, like the service tests."""
    for item in items:
        if "test_plugins_site" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def test_plugins_site(tmp_path_factory) -> Path:
    """pip-install every test plugin into a private folder (real dist-info with entry points)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            *sorted(str(path) for path in PLUGINS.iterdir() if path.is_dir()),
        ],
        check=True,
    )
    return site


@pytest.fixture
def with_test_plugins(test_plugins_site, monkeypatch, pi_env):
    """Make the test plugins visible to this process and to subprocesses (through PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(test_plugins_site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(test_plugins_site), os.environ.get("PYTHONPATH")])))
    importlib.invalidate_caches()
    yield pi_env
    for name in [module for module in sys.modules if module.startswith("pi_test_")]:
        del sys.modules[name]
