"""The unit tier runs every database fixture on both real storages: in memory and on file."""

from __future__ import annotations

from storages import both_storages

zasync_storage = both_storages
