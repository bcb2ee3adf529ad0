"""Time keys and the process UUID file (AC2-35, AC2-36)."""

from __future__ import annotations

import datetime
import uuid

from zasync.identity import get_process_uuid, load_or_create_uuid_file, set_process_uuid
from zasync.model.completed import dt_to_long, long_to_dt

UTC = datetime.UTC


def test_time_keys_round_trip():
    for moment in (
        datetime.datetime(2006, 8, 10, 15, 44, 22, 211, tzinfo=UTC),
        datetime.datetime.max.replace(tzinfo=UTC),
        datetime.datetime(1, 1, 1, tzinfo=UTC),
    ):
        key = dt_to_long(moment)
        assert long_to_dt(key) == moment
        assert long_to_dt(key + 15) == moment
        assert 0 <= key < 2**63
    doctest_time = datetime.datetime(2006, 8, 10, 15, 44, 22, 211, tzinfo=UTC)
    assert dt_to_long(doctest_time) + 15 == 6420106068108777167
    later = doctest_time + datetime.timedelta(microseconds=1)
    assert dt_to_long(later) < dt_to_long(doctest_time)  # newer sorts first


def test_uuid_file(tmp_path, monkeypatch):
    path = tmp_path / "worker.uuid"
    first = load_or_create_uuid_file(path)
    assert path.read_text().strip() == str(first)
    assert load_or_create_uuid_file(path) == first
    path.write_text("d10f43dc-ffdf-11dc-abd4-0017f2c49bdd\n")
    assert load_or_create_uuid_file(path) == uuid.UUID("d10f43dc-ffdf-11dc-abd4-0017f2c49bdd")
    set_process_uuid(None)
    monkeypatch.setenv("ZASYNC_UUID", "d10f43dc-ffdf-11dc-abd4-0017f2c49bdd")
    assert str(get_process_uuid()) == "d10f43dc-ffdf-11dc-abd4-0017f2c49bdd"
