"""A worker beside Zope (``zasync-zope-worker etc/zope.conf``) runs the jobs a web instance puts.

The web instance and the worker share one ``zope.conf`` (``worker off``) and
one ZEO server; the worker process is a worker because it is one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from processes import python_env
from workers import ZEOServer, free_port
from zope_instances import ZopeInstance, wait_until

pytestmark = pytest.mark.slow


def test_a_worker_beside_zope_runs_the_web_instances_jobs_as_their_users(tmp_path):
    zeo = ZEOServer(tmp_path / "zeo.fs", free_port(), tmp_path / "zeo.log")
    zeo.start()
    web = ZopeInstance(tmp_path / "site", "worker off\npoll-interval 0.2", zeo_port=zeo.port)
    worker = None
    log = tmp_path / "beside.log"
    try:
        web.start()
        assert "puts jobs only" in web.log_text()
        with open(log, "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "zasync.zope.worker", str(web.home / "etc" / "zope.conf")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=python_env(),
            )
        wait_until(lambda: "worker beside Zope" in log.read_text(errors="replace"), "no worker")
        status, body = web.request("POST", "/@@zasync-put", {"folder_id": "beside"})
        assert status == 200, body
        state = web.wait_for_outcome(body["job"])
        assert state["outcome"] == "succeeded", state
        folder = web.request("GET", "/@@zasync-folder", {"id": "beside"})[1]
        assert folder["made_by"] == "admin" and folder["url_seen"] == f"{web.url}/beside"
        worker.terminate()
        assert worker.wait(120) == 0  # a graceful stop
        assert "stopping worker" in log.read_text(errors="replace")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        web.stop()
        zeo.stop()


def test_the_worker_beside_zope_refuses_a_missing_file_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "zasync.zope.worker", str(tmp_path / "nope.conf")],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"zasync-zope-worker: error: no file {tmp_path / 'nope.conf'}"
