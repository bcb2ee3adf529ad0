"""The Zope tier: a real Zope 6 WSGI instance (``mkwsgiinstance``, ``runwsgi``) per test.

Run by ``make test-zope`` with the interpreter of ``var/zope-venv``, where Zope is
installed; the main suite (without Zope) does not collect this folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zope_instances import ZopeInstance


@pytest.fixture
def zope_worker(tmp_path: Path) -> Iterator[ZopeInstance]:
    """A Zope instance that runs a zasync worker in its own process (``worker on``)."""
    instance = ZopeInstance(tmp_path / "instance", "worker on\nthreads 2\npoll-interval 0.2")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
