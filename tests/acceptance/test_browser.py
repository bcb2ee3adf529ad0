"""The dashboard in headless Chromium (Debian's), while a real worker runs jobs.

Playwright drives /usr/bin/chromium; no browser is downloaded.  The test
saves screenshots of the main pages in docs/screenshots/.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest
import transaction

import zasync
from zasync.testing import wait_for_result

import support
from processes import python_env
from workers import WorkerProcess, client, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TOKEN = "browser-test-token"

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (see .ci/browser-deps)")
    db = f"file://{tmp_path / 'Data.fs'}"
    worker = WorkerProcess(db, tmp_path / "worker.log", "--threads", "2")
    web = None
    try:
        worker.wait_for_log("worker ")
        port = free_port()
        with open(tmp_path / "web.log", "ab") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "zasync", "--db", db, "web", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=python_env(ZASYNC_WEB_TOKEN=TOKEN),
            )
        url = f"http://127.0.0.1:{port}"

        def up():
            import urllib.request

            try:
                with urllib.request.urlopen(url + "/api/overview", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(up, message="the dashboard never answered")
        yield db, url, tmp_path
    finally:
        if web is not None:
            web.terminate()
            web.wait(30)
        worker.stop()
    assert TOKEN not in (tmp_path / "web.log").read_text()  # the token is never logged


def test_dashboard_watch_inspect_and_retry(dashboard):
    from playwright.sync_api import expect, sync_playwright

    db, url, tmp = dashboard
    marker = tmp / "fixed"
    # ZASYNC_UPDATE_SCREENSHOTS=1 refreshes the pictures in docs/; otherwise they go to tmp.
    shots = DOCS_SCREENSHOTS if os.environ.get("ZASYNC_UPDATE_SCREENSHOTS") else tmp
    with client(db) as conn:
        queue = zasync.get_queue(conn)
        first = [queue.put(zasync.Job(operator.mul, i, 3)) for i in range(3)]
        broken = queue.put(zasync.Job(support.fail_unless_file, str(marker)))
        transaction.commit()
        for job in [*first, broken]:
            wait_for_result(job, timeout=240)
        broken_id = int.from_bytes(broken._p_oid, "big")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/")
            succeeded = page.locator('#queues tr[data-queue=""] td.count-succeeded')
            wait_until(lambda: succeeded.inner_text() == "3", message="counts never showed")
            # More jobs while the page is open: the counts change without a reload.
            more = [queue.put(zasync.Job(operator.add, i, 1)) for i in range(4)]
            transaction.commit()
            for job in more:
                wait_for_result(job, timeout=240)
            expect(succeeded).to_have_text("7", timeout=120_000)
            expect(page.locator("#dispatchers td.alive")).to_have_count(1)
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            page.goto(url + "/jobs?state=failed")
            expect(page.locator("#jobs tr.job")).to_have_count(1)
            page.screenshot(path=str(shots / "jobs.png"), full_page=True)
            page.click(f'a[href="/jobs/{broken_id}"]')
            expect(page.locator("#traceback")).to_contain_text("RuntimeError")
            page.screenshot(path=str(shots / "failed-job.png"), full_page=True)

            # Without the token, the retry is refused and nothing changes.
            page.click("#retry")
            expect(page.locator("#error")).to_contain_text("needs the dashboard's token")
            transaction.begin()
            assert broken.get_annotation("zasync.retried_as") is None

            # With the token (and the cause fixed), the retry runs and succeeds.
            marker.write_text("fixed")
            page.goto(f"{url}/jobs/{broken_id}")
            page.fill("#token", TOKEN)
            page.click("#retry")
            expect(page.locator("#message")).to_contain_text(f"retried job {broken_id}")
            expect(page.locator("#status")).to_contain_text("succeeded", timeout=120_000)
            expect(page.locator("#result")).to_have_text("fixed")
            page.screenshot(path=str(shots / "retried-job.png"), full_page=True)
            browser.close()
        for name in ("overview", "jobs", "failed-job", "retried-job"):
            assert (shots / f"{name}.png").stat().st_size > 10_000
        transaction.begin()
        (new_id,) = broken.get_annotation("zasync.retried_as")
        info = json.loads(
            subprocess.run(
                [sys.executable, "-m", "zasync", "--db", db, "job", str(new_id), "--json"],
                capture_output=True,
                text=True,
                env=python_env(),
                check=True,
            ).stdout
        )
        assert info["outcome"] == "succeeded" and info["retry_of"] == broken_id


def test_pause_and_resume_from_the_dashboard(dashboard):
    from playwright.sync_api import expect, sync_playwright

    db, url, _tmp = dashboard
    with client(db) as conn, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/")
        row = page.locator('#queues tr[data-queue=""]')
        expect(row.locator("td.claiming")).to_contain_text("running")
        page.fill("#token", TOKEN)
        row.locator('input[name="reason"]').fill("browser test")
        row.locator('form[action="/queues/pause"] button').click()
        expect(row.locator("td.claiming .paused")).to_have_text("paused")
        expect(row.locator("td.claiming")).to_contain_text("browser test")
        transaction.begin()
        queue = zasync.get_queue(conn)
        assert queue.paused and queue.pause_reason == "browser test"
        job = queue.put(zasync.Job(operator.mul, 6, 7))
        transaction.commit()
        # The worker sees the pause (tests/integration/test_pause_workers.py checks that nothing
        # is claimed meanwhile; here, that the buttons work).
        wait_until(
            lambda: "queue '' is paused" in (_tmp / "worker.log").read_text(),
            message="the worker never saw the pause",
        )
        row.locator('form[action="/queues/resume"] button').click()
        expect(row.locator("td.claiming")).to_contain_text("running")
        wait_for_result(job, timeout=240)
        assert job.result == 42
        browser.close()
