"""Two Zope worker instances on one ZEO server: one killed with SIGKILL mid-job.

The job adds one to a counter on the site's root, and its first run is slow.
The instance running it is killed with ``kill -9`` in the middle; the other
instance finds it dead, runs the job again as the same user, and the counter
ends at exactly 1: the killed run's change was never committed.
"""

from __future__ import annotations

import pytest

from workers import ZEOServer, free_port
from zope_instances import ZopeInstance, wait_until

pytestmark = pytest.mark.slow

SETTINGS = "worker on\nthreads 2\npoll-interval 0.2\nping-interval 0.5\ndeath-interval 3"


def test_a_worker_instance_killed_mid_job_leaves_it_to_the_other_exactly_once(tmp_path):
    zeo = ZEOServer(tmp_path / "zeo.fs", free_port(), tmp_path / "zeo.log")
    zeo.start()
    instances = []
    try:
        for name in ("first", "second"):
            instance = ZopeInstance(tmp_path / name, SETTINGS, zeo_port=zeo.port)
            instance.start()  # one after the other: the first makes the application root
            instances.append(instance)
        marker = tmp_path / "starts"
        status, body = instances[0].request(
            "POST", "/@@zasync-put-count", {"marker": str(marker), "seconds": "600"}
        )
        assert status == 200, body
        wait_until(lambda: marker.exists(), "the job never started")
        job = instances[0].request("GET", "/@@zasync-job", {"job": str(body["job"])})[1]
        assert job["status"] == "active", job
        running = next(
            i
            for i in instances
            if (i.home / "var" / "zasync-uuid.txt").read_text().strip()
            in instances[0].request("GET", "/@@zasync-job-worker", {"job": str(body["job"])})[1]
        )
        other = next(i for i in instances if i is not running)
        running.kill()
        state = other.wait_for_outcome(body["job"])
        assert state["outcome"] == "succeeded", state
        assert other.request("GET", "/@@zasync-count")[1] == {"count": 1}
        assert marker.read_text() == "started\nstarted\n"  # killed once, run again once
    finally:
        for instance in instances:
            instance.kill()
        zeo.stop()
