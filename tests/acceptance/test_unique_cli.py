"""``zasync put --unique-key`` and ``--priority``: a held key adds nothing and names the holder."""

from __future__ import annotations

import json

import ZODB
import ZODB.FileStorage

from zasync.web import make_app

from processes import file_database, zasync_cli


def test_a_held_key_adds_nothing_and_bad_options_change_nothing(tmp_path):
    path = tmp_path / "Data.fs"
    db = file_database(path)

    def put(*options, check=True):
        return zasync_cli("--db", db, "put", "operator.add", "1", "2", *options, check=check)

    first = json.loads(put("--unique-key", "nightly", "--json").stdout)
    assert first["added"] is True
    again = json.loads(put("--unique-key", "nightly", "--json").stdout)
    assert again == {**first, "added": False}
    text = put("--unique-key", "nightly").stdout
    assert f"job {first['oid']} holds key 'nightly'" in text and "nothing added" in text

    refused = put("--unique-until", "finished", check=False)
    assert refused.returncode == 1 and "unique_until= goes with a unique_key=" in refused.stderr
    bad = put("--unique-key", "k", "--unique-until", "soon", check=False)
    assert bad.returncode == 2 and "'soon' is not one of 'started', 'finished'" in bad.stderr
    empty = put("--unique-key", "", check=False)
    assert empty.returncode == 1 and "non-empty string" in empty.stderr
    assert len(json.loads(zasync_cli("--db", db, "jobs", "--json").stdout)) == 1

    urgent = json.loads(put("--priority", "7", "--json").stdout)["oid"]
    assert "priority:       7" in zasync_cli("--db", db, "job", str(urgent)).stdout
    assert put("--priority", "101", check=False).returncode == 2
    assert len(json.loads(zasync_cli("--db", db, "jobs", "--json").stdout)) == 2

    shown = json.loads(zasync_cli("--db", db, "job", str(first["oid"]), "--json").stdout)
    assert (shown["unique_key"], shown["unique_until"]) == ("nightly", "started")
    opened = ZODB.DB(ZODB.FileStorage.FileStorage(str(path), read_only=True))
    try:
        page = make_app(opened, "t").test_client().get(f"/jobs/{first['oid']}")
        assert 'id="unique-key">nightly (held until it has started)' in page.get_data(as_text=True)
    finally:
        opened.close()
