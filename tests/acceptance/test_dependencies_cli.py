"""``zasync put --after``, ``zasync job`` and the dashboard's graph around a job."""

from __future__ import annotations

import json

import transaction
import ZODB
import ZODB.FileStorage

from zasync.testing import run_until_idle
from zasync.web import make_app

from processes import file_database, zasync_cli


def test_put_after_shows_the_graph_and_refuses_unknown_jobs(tmp_path):
    path = tmp_path / "Data.fs"
    db = file_database(path)

    def cli(*args, check=True):
        return zasync_cli("--db", db, *args, check=check)

    first = json.loads(cli("put", "operator.add", "1", "2", "--json").stdout)["oid"]
    second = json.loads(
        cli("put", "operator.mul", "3", "4", "--after", str(first), "--json").stdout
    )["oid"]
    shown = json.loads(cli("job", str(second), "--json").stdout)
    assert shown["waiting"] is True and [n["id"] for n in shown["waits_for"]] == [first]
    assert f"runs after:     {first} _operator.add pending" in cli("job", str(second)).stdout
    assert f"needed by:      {second} _operator.mul pending" in cli("job", str(first)).stdout

    unknown = cli("put", "operator.add", "1", "1", "--after", "999999", check=False)
    assert unknown.returncode == 1 and "999999" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    bad = cli("put", "operator.add", "1", "1", "--after", str(first),
              "--on-dependency-failure", "maybe", check=False)  # fmt: skip
    assert bad.returncode == 2
    assert len(json.loads(cli("jobs", "--json").stdout)) == 2  # nothing else was put

    opened = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        web = make_app(opened, "t").test_client()
        page = web.get(f"/jobs/{second}").get_data(as_text=True)
        assert 'id="waits-for"' in page and "(waiting)" in page
        assert f'class="dependency" data-id="{first}"' in page
        assert run_until_idle(opened) == [3, 12]
        transaction.begin()
        page = web.get(f"/jobs/{second}").get_data(as_text=True)
        assert "(waiting)" not in page and "completed (succeeded)" in page
        assert 'id="needed-by"' in web.get(f"/jobs/{first}").get_data(as_text=True)
    finally:
        opened.close()
