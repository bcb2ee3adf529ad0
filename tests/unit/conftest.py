"""The unit tier runs every database fixture on both real storages: in memory and on file."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import transaction

from zasync import Agent

from storages import both_storages

zasync_storage = both_storages


@pytest.fixture
def agent(queue: Any) -> Any:
    """An agent of a registered dispatcher in the default queue, for claiming by hand."""
    dispatcher = queue.dispatchers.register(uuid.uuid4())
    dispatcher["main"] = made = Agent(size=1000)
    transaction.commit()
    return made
