"""Both HTTP servers (the dashboard on waitress, a worker's live view) on real sockets:
Host checks, security headers, bursts of concurrent requests and idle connections."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import transaction

import zasync
from zasync import web
from zasync.ops import live
from zasync.ops.metrics import WorkerMetrics
from zasync.storage.database import open_database
from zasync.testing import running_dispatcher

from processes import python_env
from workers import free_port, wait_until

TOKEN = "http-test-token"


@dataclass
class Server:
    port: int
    page: str  # a path that answers 200
    html: bool


@pytest.fixture
def dashboard(zasync_db, monkeypatch) -> Iterator[Server]:
    monkeypatch.setattr(web, "IDLE_TIMEOUT", 2)
    from waitress import wasyncore

    server = web.make_server(zasync_db, "127.0.0.1", 0, TOKEN, ["dash.example.com"])
    stop = threading.Event()

    def run() -> None:  # server.run(), in steps, so that it can stop between them
        while not stop.is_set():
            wasyncore.loop(timeout=0.1, map=server._map, count=1)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        yield Server(int(server.effective_port), "/", True)
    finally:
        stop.set()
        runner.join(30)
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)


@pytest.fixture
def worker_view(zasync_db, monkeypatch) -> Iterator[Server]:
    monkeypatch.setattr(live, "IDLE_TIMEOUT", 2.0)
    with running_dispatcher(zasync_db, poll_interval=0.5) as dispatcher:
        server = live.LiveServer(dispatcher, WorkerMetrics(), 0)
        try:
            yield Server(server.address[1], "/live/status", False)
        finally:
            server.close()


@pytest.fixture(params=["dashboard", "worker_view"])
def server(request) -> Server:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def get(port: int, path: str, host: str | None = None, timeout: float = 60) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": host} if host is not None else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def test_a_request_for_another_host_is_refused(server):
    refused, _, body = get(server.port, server.page, host="evil.example")
    assert refused == 421 and "Host" in body and len(body) < 100
    rebinding, _, _ = get(server.port, server.page, host=f"evil.example:{server.port}")
    assert rebinding == 421
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        assert get(server.port, server.page, host=host)[0] == 200, host
    assert get(server.port, server.page, host=f"localhost:{server.port + 1}")[0] == 421


def test_a_configured_name_is_answered(dashboard):
    assert get(dashboard.port, "/", host="dash.example.com")[0] == 200
    assert get(dashboard.port, "/", host="dash.example.com:443")[0] == 200
    assert get(dashboard.port, "/", host="other.example.com")[0] == 421


def test_every_response_forbids_framing_and_has_a_csp(server):
    for path in (server.page, "/metrics", "/no-such-page"):
        _, headers, body = get(server.port, path)
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
    assert get(server.port, server.page, host="evil.example")[1]["X-Frame-Options"] == "DENY"
    if server.html:
        _, headers, body = get(server.port, "/")
        (nonce,) = re.findall(r"script-src 'nonce-([^']+)'", headers["Content-Security-Policy"])
        assert f'<script nonce="{nonce}">' in body and f'<style nonce="{nonce}">' in body
        assert " style=" not in body  # inline style attributes would be blocked
        assert (
            get(server.port, "/")[1]["Content-Security-Policy"]
            != headers["Content-Security-Policy"]
        )  # a fresh nonce each time


def test_200_concurrent_requests_are_all_answered(server):
    count = 200
    start = threading.Barrier(count)

    def one(_: int) -> int:
        start.wait(60)
        return int(get(server.port, server.page)[0])

    began = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(one, range(count)))
    elapsed = time.monotonic() - began
    assert statuses == [200] * count, {s: statuses.count(s) for s in set(statuses)}
    print(f"{count} concurrent requests: {statuses.count(200)} answered in {elapsed:.2f}s")


def test_idle_connections_neither_block_others_nor_stay_open(server):
    idle = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            idle.append(s)
        began = time.monotonic()
        status, _, _ = get(server.port, server.page, timeout=30)
        assert status == 200 and time.monotonic() - began < 10
        # The server drops a silent connection (here after 2 s; 20 s / 10 s by default).
        idle[0].settimeout(60)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()


def test_zasync_web_takes_allowed_hosts_and_never_logs_the_token(tmp_path):
    port = free_port()
    log = tmp_path / "web.log"
    with open_database(f"file://{tmp_path / 'Data.fs'}") as opened:
        conn = opened.db.open()
        zasync.install_queues(conn)
        transaction.commit()
        conn.close()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "zasync", "--db", f"file://{tmp_path / 'Data.fs'}", "web"),
                *("--port", str(port), "--allowed-host", "dash.example.com"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=python_env(ZASYNC_WEB_TOKEN=TOKEN),
        )
    try:

        def up() -> bool:
            try:
                return bool(get(port, "/api/overview", timeout=5)[0] == 200)
            except OSError:
                return False

        wait_until(up, message="the dashboard never answered")
        assert get(port, "/api/overview", host="dash.example.com")[0] == 200
        assert get(port, "/api/overview", host="evil.example")[0] == 421
        assert get(port, f"/jobs/999999?token={TOKEN}")[0] == 404
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/jobs/999999/retry", headers={"X-Zasync-Token": TOKEN})
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        process.terminate()
        process.wait(30)
    assert TOKEN not in log.read_text()
