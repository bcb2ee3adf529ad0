"""``zasync broadcast``: a job on every live worker, and its collector's result."""

from __future__ import annotations

import json

from processes import file_database, zasync_cli
from workers import WorkerProcess, wait_until


def test_broadcast_to_the_running_worker_and_refuse_without_one(tmp_path):
    db = file_database(tmp_path / "Data.fs")
    refused = zasync_cli("--db", db, "broadcast", "support.plain_pid", "1", check=False)
    assert refused.returncode == 1 and "no worker of queue '' is alive" in refused.stderr
    worker = WorkerProcess(db, tmp_path / "worker.log")
    try:
        worker.wait_for_log("serving ")
        done = json.loads(zasync_cli("--db", db, "broadcast", "support.plain_pid", "1",
                                     "--json").stdout)  # fmt: skip
        assert done["workers"] == 1

        def job():
            return json.loads(
                zasync_cli("--db", db, "job", str(done["collector"]), "--json").stdout
            )

        wait_until(lambda: job()["status"] == "completed")
        assert list(job()["result"].values()) == [worker.process.pid]
    finally:
        worker.stop()
