"""The quick start's demonstration: a real worker process runs a parallel workload."""

from __future__ import annotations

import pytest
import ZODB

from zasync import demo


@pytest.mark.slow
def test_demo_computes_the_right_total(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "Data.fs"
    done = subprocess.run(  # exactly as the quick start runs it
        [sys.executable, "-m", "zasync.demo", "--path", str(path), "--jobs", "12", "--slice", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "correct" in out and "from 12 slices" in out
    db = ZODB.DB(str(path))  # the worker has stopped: the file is free again
    try:
        tally = db.open().root()["demo-tally"]
        assert tally.slices == 12
        assert tally.total == sum(i * i for i in range(600))
    finally:
        db.close()


def test_demo_refuses_bad_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--path", str(tmp_path / "x.fs"), "--jobs", "0"])
    assert "--jobs and --slice must be positive" in capsys.readouterr().err
