"""``zasync ratelimit`` and ``zasync put --rate-limit``, and the limits on the dashboard."""

from __future__ import annotations

import json

import ZODB
import ZODB.FileStorage

from zasync.web import make_app

from processes import file_database, zasync_cli


def test_set_list_use_and_remove_a_rate_limit(tmp_path):
    db = file_database(tmp_path / "Data.fs")

    def cli(*args, check=True):
        return zasync_cli("--db", db, *args, check=check)

    made = json.loads(cli("ratelimit", "set", "api", "20", "--per", "1s", "--json").stdout)
    assert made == {"queue": "", "name": "api", "count": 20, "per": 1.0, "created": True}
    assert (
        "rate limit 'api' changed: 5 per 0.5 s"
        in cli("ratelimit", "set", "api", "5", "--per", "500ms").stdout
    )
    listed = json.loads(cli("ratelimit", "list", "--json").stdout)
    assert listed == [{"queue": "", "name": "api", "count": 5, "per": 0.5, "used": 0}]

    put = json.loads(cli("put", "operator.add", "1", "2", "--rate-limit", "api", "--json").stdout)
    assert json.loads(cli("job", str(put["oid"]), "--json").stdout)["status"] == "pending"
    unknown = cli("put", "operator.add", "1", "2", "--rate-limit", "nope", check=False)
    assert unknown.returncode == 1 and "unknown rate limit 'nope'" in unknown.stderr
    for args, code, message in [
        (["ratelimit", "set", "api", "0"], 2, "0 is not in the range"),
        (["ratelimit", "set", "api", "5", "--per", "soon"], 2, "bad --per"),
        (["ratelimit", "remove", "nope"], 1, "no rate limit named 'nope'"),
    ]:
        done = cli(*args, check=False)
        assert done.returncode == code and message in done.stderr, (args, done.stderr)
    assert len(json.loads(cli("jobs", "--json").stdout)) == 1  # nothing else put

    opened = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "Data.fs"), read_only=True))
    try:
        page = make_app(opened, "t").test_client().get("/").get_data(as_text=True)
        assert 'data-name="api">api: 0 of 5 per 0.5 s' in page
    finally:
        opened.close()
    assert "rate limit 'api' removed" in cli("ratelimit", "remove", "api").stdout
    assert json.loads(cli("ratelimit", "list", "--json").stdout) == []
