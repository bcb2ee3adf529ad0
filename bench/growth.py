"""How fast an idle worker grows the database: bytes per hour, from its pings.

Runs an idle worker against a ZEO server (FileStorage behind it) with a short
ping interval, measures the file's growth per ping, and prints the growth per
hour at the default ping interval (30 s), before and after a pack.

Run: .venv/bin/python bench/growth.py [--seconds 20] [--ping-interval 0.5]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from workers import WorkerProcess, ZEOServer, client, free_port  # noqa: E402

DEFAULT_PING_INTERVAL = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ping-interval", type=float, default=0.5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data = directory / "Data.fs"
        server = ZEOServer(data, free_port(), directory / "zeo.log")
        server.start()
        worker = WorkerProcess(
            server.uri,
            directory / "worker.log",
            "--ping-interval",
            str(options.ping_interval),
            "--poll-interval",
            str(options.ping_interval / 2),
            "--death-interval",
            str(options.ping_interval * 10),
        )
        try:
            worker.wait_for_log("worker ")
            time.sleep(2 * options.ping_interval)  # past start-up's own writes
            before = os.path.getsize(data)
            started = time.monotonic()
            time.sleep(options.seconds)
            grown = os.path.getsize(data) - before
            elapsed = time.monotonic() - started
        finally:
            worker.stop()
        pings = elapsed / options.ping_interval
        per_ping = grown / pings
        per_hour = per_ping * 3600 / DEFAULT_PING_INTERVAL
        with client(server.uri) as conn:
            conn.db().pack()
        packed = os.path.getsize(data)
        server.stop()
        print(
            f"idle worker: {grown:,} bytes in {elapsed:.0f} s at one ping per "
            f"{options.ping_interval} s = {per_ping:,.0f} bytes per ping; at the default "
            f"ping interval ({DEFAULT_PING_INTERVAL:.0f} s): {per_hour / 1024:,.1f} KiB per hour, "
            f"{per_hour * 24 / 1024 / 1024:,.2f} MiB per day before packing; "
            f"the file is {packed:,} bytes after a pack"
        )
        log = worker.text()
        if re.search(r"Traceback", log):
            print("(the worker logged errors; see above)")


if __name__ == "__main__":
    main()
