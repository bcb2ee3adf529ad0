"""A real Zope 6 WSGI instance (``mkwsgiinstance``, served by ``runwsgi``), for the Zope tier."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from processes import python_env
from workers import PATIENCE, free_port

BIN = Path(sys.executable).parent
ADMIN = ("admin", "secret")


class ZopeInstance:
    """A Zope WSGI instance made by ``mkwsgiinstance``, served by ``runwsgi`` on a free port."""

    def __init__(
        self, home: Path, product_config: str, zeo_port: int | None = None, extra_conf: str = ""
    ) -> None:
        self.home = home
        subprocess.run(
            [BIN / "mkwsgiinstance", "-d", str(home), "-u", ":".join(ADMIN)],
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        ini = home / "etc" / "zope.ini"
        ini.write_text(ini.read_text().replace("port = 8080", f"port = {self.port}"))
        conf = home / "etc" / "zope.conf"
        text = conf.read_text()
        if zeo_port is not None:  # a ZEO client instead of its own FileStorage
            start = text.index("<zodb_db main>")
            end = text.index("</zodb_db>", start) + len("</zodb_db>")
            text = (
                "%import ZEO\n"
                + text[:start]
                + "<zodb_db main>\n  mount-point /\n  <zeoclient>\n"
                + f"    server 127.0.0.1:{zeo_port}\n    storage 1\n  </zeoclient>\n</zodb_db>"
                + text[end:]
            )
        text += f"\n{extra_conf}\n<product-config zasync>\n{product_config}\n</product-config>\n"
        conf.write_text(text)
        includes = home / "etc" / "package-includes"
        includes.mkdir(exist_ok=True)
        (includes / "zasync-configure.zcml").write_text(
            '<configure xmlns="http://namespaces.zope.org/zope">\n'
            '  <include package="zasync.zope" />\n'
            '  <include package="zope_site_jobs" />\n'
            "</configure>\n"
        )
        self.log = home / "var" / "log" / "runwsgi.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [BIN / "runwsgi", str(self.home / "etc" / "zope.ini")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=python_env(),
            )
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                self.request("GET", "/")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"Zope did not start:\n{self.log_text()}") from None
                time.sleep(0.1)

    def log_text(self) -> str:
        event_log = self.home / "var" / "log" / "event.log"
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text + (event_log.read_text(errors="replace") if event_log.exists() else "")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        return self.process.wait(PATIENCE)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(PATIENCE)

    def job_state(self, job_id: int | str) -> dict[str, Any]:
        """The job's status, outcome, error and result, through the test add-on's view."""
        status, state = self.request("GET", "/@@zasync-job", {"job": str(job_id)})
        assert status == 200, state
        return dict(state)

    def wait_for_outcome(self, job_id: int | str) -> dict[str, Any]:
        """Wait until the job has an outcome; return its state."""
        state: dict[str, Any] = wait_until(
            lambda: (s := self.job_state(job_id))["outcome"] and s,
            f"job {job_id} never finished",
        )
        return state

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        user: tuple[str, str] | None = ADMIN,
    ) -> tuple[int, Any]:
        """Send a request; return its status and its JSON (or text) body."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        url = self.url + path
        if method == "GET" and form:
            url, data = f"{url}?{data.decode()}", None  # type: ignore[union-attr]
        request = urllib.request.Request(url, data=data, method=method)
        if user is not None:
            token = base64.b64encode(":".join(user).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, body = answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode(errors="replace")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body


def wait_until(condition: Any, message: str) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)
