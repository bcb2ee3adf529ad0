"""The demonstration workload of the quick start runs and checks its own result."""

from __future__ import annotations

import ZODB

from zasync import demo


def test_demo_computes_the_right_total(tmp_path, capsys):
    path = tmp_path / "Data.fs"
    assert demo.main(["--path", str(path), "--jobs", "12", "--slice", "50"]) == 0
    out = capsys.readouterr().out
    assert "correct" in out and "completed jobs filed in the agent: 12" in out
    db = ZODB.DB(str(path))
    try:
        tally = db.open().root()["demo-tally"]
        assert tally.slices == 12
        assert tally.total == sum(i * i for i in range(600))
    finally:
        db.close()


def test_demo_refuses_bad_sizes(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        demo.main(["--path", str(tmp_path / "x.fs"), "--jobs", "0"])
    assert "--jobs and --slice must be positive" in capsys.readouterr().err
