"""Fixtures of the adversarial suite: clean dispatchers, and modules a deploy removes."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from zasync.runtime import dispatcher as dispatcher_module

import bad_jobs
import support


@pytest.fixture(autouse=True)
def _clean_dispatchers() -> Iterator[None]:
    bad_jobs.RUNS.clear()
    support.events.clear()
    yield
    for dispatcher in list(dispatcher_module._registry.values()):
        if dispatcher.activated:
            dispatcher.stop(5)
    dispatcher_module.clear()


class Deploy:
    """Modules written to a folder on ``sys.path``, that a test can remove again."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        folder.mkdir()
        monkeypatch.syspath_prepend(str(folder))

    def add(self, name: str, source: str) -> types.ModuleType:
        """Write module ``name`` and import it."""
        (self.folder / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        return importlib.import_module(name)

    def remove(self, name: str) -> None:
        """What a deploy that drops the module does: the file and the loaded module go."""
        (self.folder / f"{name}.py").unlink()
        sys.modules.pop(name, None)
        importlib.invalidate_caches()


@pytest.fixture
def deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deploy:
    return Deploy(tmp_path / "deploy", monkeypatch)
