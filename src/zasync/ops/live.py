"""A worker's own view, over HTTP on loopback: ``zasync worker --http-port PORT``.

The seeds' monitor answered questions about one process from its memory:
its poll status, the jobs of its last poll, its recent polls, its record of
a job, and statistics over its polls.  zasync serves the same answers as
JSON from a small HTTP server inside the worker, bound to 127.0.0.1, next
to the worker's Prometheus ``/metrics``:

=========================  ==================================================
``/live/status``           status (RUNNING, STARTING, STUCK, DEAD, STOPPED),
                           uptime, time since the last poll, poll interval,
                           threads alive and declared size of each pool
``/live/jobs``             jobs of the latest poll not completed yet
``/live/polls?count=N``    the newest N polls (default 3)
``/live/job/ID``           this worker's record of job ID
``/live/jobstats``         started/successful/failed counts over its polls
``/metrics``               Prometheus metrics (worker and database)
=========================  ==================================================

``zasync live status|jobs|polls|job ID|jobstats --url http://127.0.0.1:PORT``
prints them.  It has no token: it only listens on loopback, and only reads.
It answers only requests whose ``Host`` is its loopback address (DNS
rebinding), sends the headers of :mod:`zasync.ops._http`, runs at most
:data:`MAX_HANDLERS` connections at once (more wait in a long listen
backlog) and drops a connection silent for :data:`IDLE_TIMEOUT` seconds.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import urllib.parse
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zasync.ops import _http, views
from zasync.ops.metrics import CONTENT_TYPE, WorkerMetrics
from zasync.runtime.dispatcher import Dispatcher
from zasync.storage.database import Database

log = logging.getLogger("zasync.events")

MAX_HANDLERS = 256  # connections served at once (a thread each); more wait to be accepted
IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent
BACKLOG = 1024  # connections the kernel holds until accepted


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def status(dispatcher: Any) -> dict[str, Any]:
    """The dispatcher's status info, and its thread pools."""
    info = _plain(dispatcher.getStatusInfo())
    info["pools"] = [
        {
            "queue": queue,
            "agent": agent,
            "size": pool.getSize(),  # declared
            "threads": pool.thread_count(),  # alive, not counting those leaving
            "running": getattr(pool, "running", None),
            "thread deaths": getattr(pool, "deaths", 0),
            "errors": getattr(pool, "errors", 0),
            "timed out": getattr(pool, "timed_out", 0),
            "abandoned threads": pool.abandoned_threads()
            if hasattr(pool, "abandoned_threads")
            else 0,
        }
        for (queue, agent), pool in sorted(dispatcher.pools.items())
    ]
    return dict(info)


def jobs(dispatcher: Any) -> list[dict[str, Any]]:
    """The jobs of the latest poll that have not completed, with their records."""
    found = []
    for oid, database_name in dispatcher.getActiveJobIds():
        try:
            record = dispatcher.getJobInfo(oid, database_name)
        except (KeyError, ValueError):
            record = {}
        found.append({"id": oid, "database": database_name, **_plain(record)})
    return found


def polls(dispatcher: Any, count: int = 3) -> list[dict[str, Any]]:
    """The newest ``count`` polls: key, time and what each queue's agents did."""
    return [
        {"key": poll.key, "time": poll.utc_timestamp.isoformat(), "results": _plain(dict(poll))}
        for poll in dispatcher.iterPolls(count=count)
    ]


def job(dispatcher: Any, ident: str) -> dict[str, Any]:
    """This worker's record of a job; KeyError if it has none."""
    record = dispatcher.getJobInfo(views.parse_job_id(ident))
    return dict(_plain(record))


def jobstats(dispatcher: Any) -> dict[str, Any]:
    """Statistics over the remembered polls."""
    return dict(_plain(dispatcher.getStatistics()))


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_HANDLERS`` at once; the rest wait in the backlog.

    The stock server starts a thread for every connection and listens with a
    backlog of 5: under a burst the kernel refuses connections, and idle
    connections pile up threads without end.
    """

    request_queue_size = BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        self.closing = False
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self.closing:
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LiveServer:
    """The worker's loopback HTTP server (a daemon thread); ``close()`` stops it.

    It answers the ``Host`` names of :func:`zasync.ops._http.allowed_hosts` for
    its address, and ``allowed_names``.
    """

    def __init__(
        self,
        dispatcher: Any,
        metrics: WorkerMetrics,
        port: int,
        host: str = "127.0.0.1",
        allowed_names: Collection[str] = (),
    ) -> None:
        self.allowed_hosts = frozenset[str]()
        handler = _handler(dispatcher, metrics, self)
        self.server = _BoundedServer((host, port), handler)
        self.address = self.server.server_address
        self.allowed_hosts = _http.allowed_hosts(host, self.address[1], allowed_names)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="zasync-live", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.closing = True
        self.server.shutdown()
        self.server.server_close()


def _handler(
    dispatcher: Any, metrics: WorkerMetrics, live: LiveServer
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_TIMEOUT  # a socket timeout: a silent connection is dropped

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are not worth a log line each

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in _http.SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Security-Policy", _http.DATA_CSP)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, default=str).encode(), "application/json")

        def do_GET(self) -> None:
            if not _http.host_allowed(self.headers.get("Host"), live.allowed_hosts):
                body = _http.MISDIRECTED_BODY.encode()
                self._send(_http.MISDIRECTED, body, "text/plain; charset=utf-8")
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            try:
                if url.path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE)
                elif url.path == "/live/status":
                    self._json(200, status(dispatcher))
                elif url.path == "/live/jobs":
                    self._json(200, jobs(dispatcher))
                elif url.path == "/live/polls":
                    self._json(200, polls(dispatcher, int(query.get("count", ["3"])[0])))
                elif url.path.startswith("/live/job/"):
                    self._json(200, job(dispatcher, url.path.rsplit("/", 1)[1]))
                elif url.path == "/live/jobstats":
                    self._json(200, jobstats(dispatcher))
                else:
                    self._json(404, {"error": f"no such page: {url.path}"})
            except KeyError as e:
                self._json(404, {"error": f"this worker has no record of job {e.args[0]}"})
            except ValueError as e:
                self._json(400, {"error": str(e)})

    return Handler


def start_worker_view(dispatcher: Dispatcher, opened: Database, port: int) -> LiveServer:
    """Time the worker's polls, and serve /metrics and /live/* on 127.0.0.1:``port``."""
    metrics = WorkerMetrics()
    metrics.add_database(opened.db)
    dispatcher.records = metrics.records()
    server = LiveServer(dispatcher, metrics, port)
    log.info("worker metrics and live view at http://%s:%d/", *server.address[:2])
    return server
