"""The benchmark's targets by ``--targets`` name (see :mod:`targets.base` for the interface)."""

from __future__ import annotations

from targets.base import Context, Target
from targets.peer_targets import PEERS
from targets.zasync_targets import (
    BATCHED,
    ZasyncEmbedded,
    ZasyncPg1,
    ZasyncPg2,
    ZasyncZeo1,
    ZasyncZeo2,
)

ZASYNC: list[type[Target]] = [
    ZasyncEmbedded,
    ZasyncZeo1,
    ZasyncZeo2,
    ZasyncPg1,
    ZasyncPg2,
    *BATCHED,
]
#: Every target, in the order of the table.
TARGETS: dict[str, type[Target]] = {t.name: t for t in [*ZASYNC, *PEERS]}

__all__ = ["TARGETS", "Context", "Target"]
