"""The two real storages the fast tests run on: in memory (DemoStorage) and on file."""

from __future__ import annotations

from typing import Any

import pytest
from ZODB.DemoStorage import DemoStorage
from ZODB.FileStorage import FileStorage


def make_storage(kind: str, path: Any) -> Any:
    """A real storage: 'memory' (DemoStorage) or 'file' (FileStorage in ``path``)."""
    if kind == "memory":
        return DemoStorage()
    return FileStorage(str(path / "Data.fs"))


@pytest.fixture(params=["memory", "file"])
def both_storages(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """DemoStorage, then FileStorage: a test that opens a database runs on both.

    Assign it to ``zasync_storage`` in a conftest or test module to override
    the plugin's FileStorage-only fixture there.
    """
    return make_storage(request.param, tmp_path)
