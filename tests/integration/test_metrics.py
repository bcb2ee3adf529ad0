"""The Prometheus endpoint of a worker, scraped after a known workload."""

from __future__ import annotations

import re
import urllib.request

import transaction

import zasync
from zasync.testing import wait_for_result

from workers import WorkerProcess, client, free_port


def sample(text, name, **labels):
    """The value of one sample in Prometheus' text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if got == wanted:
            return float(match.group(3))
    return 0.0


def test_metrics_after_a_known_workload(tmp_path):
    import operator

    db = f"file://{tmp_path / 'Data.fs'}"
    port = free_port()
    worker = WorkerProcess(db, tmp_path / "worker.log", "--http-port", str(port))
    try:
        worker.wait_for_log("worker metrics and live view at")
        with client(db) as conn:
            queue = zasync.get_queue(conn)
            good = [queue.put(zasync.Job(operator.mul, i, 2)) for i in range(5)]
            bad = [queue.put(zasync.Job(operator.truediv, i, 0)) for i in range(2)]
            later = queue.put(
                zasync.Job(operator.add, 1, 1),
                begin_after=zasync.utcnow() + __import__("datetime").timedelta(hours=1),
            )
            transaction.commit()
            for job in good + bad:
                wait_for_result(job, timeout=240)
            assert later.status == zasync.PENDING

            def scrape():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return r.read().decode()

            # Finished jobs are filed at the worker's next poll: wait for the gauges.
            from workers import wait_until

            text = wait_until(
                lambda: (
                    (t := scrape())
                    and sample(t, "zasync_jobs", queue="", state="failed") == 2
                    and t
                ),
                message="failed jobs never filed",
            )
        assert (
            sample(text, "zasync_worker_jobs_completed_total", queue="", outcome="succeeded") == 5
        )
        assert sample(text, "zasync_worker_jobs_completed_total", queue="", outcome="failed") == 2
        assert sample(text, "zasync_worker_job_duration_seconds_count", queue="") == 7
        assert sample(text, "zasync_worker_poll_duration_seconds_count") >= 1
        assert sample(text, "zasync_jobs", queue="", state="succeeded") == 5
        assert sample(text, "zasync_jobs", queue="", state="pending") == 1
        assert sample(text, "zasync_jobs", queue="", state="active") == 0
        (uuid,) = re.findall(r'zasync_dispatcher_up\{queue="",uuid="([^"]+)"\} 1\.0', text)
        assert sample(text, "zasync_dispatcher_seconds_since_ping", queue="", uuid=uuid) >= 0
        assert "zasync_retries_total" in text or "# TYPE zasync_retries counter" in text
    finally:
        worker.stop()
