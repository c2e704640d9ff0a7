"""CLI fixtures: a private config directory and the ``cascade`` app bound to the live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.cli_support import Cascade
from tests.support import LiveServer

CASCADE_ENV = ("CASCADE_API_URL", "CASCADE_TOKEN", "CASCADE_ORG")


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG_CONFIG_HOME, and no CASCADE_* variables leaking in from the developer's shell."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in CASCADE_ENV:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def cascade(live_server: LiveServer, config_home: Path) -> Cascade:
    return Cascade(live_server)
