"""The commands that serve or ask a server: ``web`` (the dashboard) and ``live`` (a worker)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import click

from zasync.cli import _output as out
from zasync.cli._common import CONNECT_TIMEOUT, CliError, check_port, database
from zasync.model.queue import install_queues
from zasync.model.tx import commit_in_fresh_connection
from zasync.storage.database import default_uri, file_path, one_line


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; beyond loopback, reads need the token.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token", envvar="ZASYNC_WEB_TOKEN", show_envvar=True, default=None,
              help="Secret for actions; printed once if not given.")  # fmt: skip
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME[:PORT]",
              help="Also answer requests for this Host (a reverse proxy's name); "
              "repeatable.")  # fmt: skip
@click.pass_obj
def web(
    obj: dict[str, Any], host: str, port: int, token: str | None, allowed_hosts: tuple[str, ...]
) -> None:
    """Serve the web dashboard (queues, workers, jobs, charts, actions, /metrics)."""
    from zasync import web as web_module

    check_port(host, port, "--port")
    _wait_for_file(obj)
    with database(obj, queues=False) as db:
        _install_default_queue(db)
        if not token:
            token = web_module.new_token()
            click.echo(f"dashboard token (shown once): {token}", err=True)
        click.echo(f"dashboard at http://{host}:{port}/", err=True)
        web_module.serve(db, host, port, token, allowed_hosts)


@click.command()
@click.argument("what", type=click.Choice(["status", "jobs", "polls", "job", "jobstats"]))
@click.argument("job_id", required=False)
@click.option("--url", envvar="ZASYNC_WORKER_URL", show_envvar=True,
              default="http://127.0.0.1:9187", show_default=True,
              help="The worker's --http-port address.")  # fmt: skip
@click.option("--count", type=click.IntRange(1), default=3, show_default=True,
              help="polls: how many.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def live(what: str, job_id: str | None, url: str, count: int, as_json: bool) -> None:
    """Ask a running worker (started with --http-port) about its own threads and polls.

    status: poll status, uptime, active threads; jobs: jobs of its last poll;
    polls: its recent polls; job ID: its record of a job; jobstats: its statistics.
    """
    path = {
        "status": "/live/status",
        "jobs": "/live/jobs",
        "polls": f"/live/polls?count={count}",
        "jobstats": "/live/jobstats",
        "job": f"/live/job/{job_id}",
    }[what]
    if what == "job" and not job_id:
        raise click.UsageError("live job needs a JOB_ID")
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http:// URL", param_hint="'--url'")
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("error", str(e))
        except (ValueError, AttributeError):
            message = f"{url} answered {e.code} {e.reason}; is it a zasync worker?"
        raise CliError(one_line(str(message))) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise CliError(
            f"no worker answers at {url} ({one_line(e)}); start it with --http-port"
        ) from None
    if as_json:
        out.print_json(data)
    elif what == "status":
        for key, value in data.items():
            click.echo(f"{key + ':':22} {value}")
    elif what == "jobs":
        out.table(["id", "call", "thread", "started"],
               [[j["id"], j["call"], j["thread"], j["started"]] for j in data])  # fmt: skip
    else:
        out.print_json(data)


def _wait_for_file(obj: dict[str, Any]) -> None:
    """Give a worker started beside the dashboard the connect timeout to create a new file.

    Services started together (systemd, compose) race; a file still missing
    after that is a mistake, said in one line by the opening that follows.
    """
    path = file_path(obj["db"] or default_uri())
    if path is None:
        return
    deadline = time.monotonic() + obj.get("connect_timeout", CONNECT_TIMEOUT)
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)  # a wait with a real deadline, not a backoff


def _install_default_queue(db: Any) -> None:
    """Install the queues (the default one) if no worker has yet; harmless if one has."""
    # A worker starting beside us installs them too: conflicts retry.
    commit_in_fresh_connection(
        db, lambda conn, _tm: install_queues(conn), note="zasync: install queues"
    )
