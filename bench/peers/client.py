"""A benchmark client: puts jobs for one target, in that target's environment.

Run by the harness (never by hand), with the target's environment variables set:

* ``client.py TARGET enqueue N``: put N drain jobs (no worker is running);
* ``client.py TARGET warmup``: put latency job -1 (the harness waits for it to start);
* ``client.py TARGET latency SAMPLES INTERVAL_MS``: put latency jobs 0..SAMPLES-1 one at a
  time, INTERVAL_MS apart, and print JSON: ``puts``, a list of ``[before, after]`` pairs
  (the ``time.time()`` read just before each put and right after it was committed or
  acknowledged), and ``retries``, the puts retried after a conflict.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import TARGETS


def main(argv: list[str]) -> None:
    """Run one client command (see the module's docstring)."""
    name, command, *args = argv
    target = TARGETS[name]()
    try:
        if command == "enqueue":
            target.enqueue(int(args[0]))
        elif command == "warmup":
            target.put_one(-1)
        elif command == "latency":
            samples, interval = int(args[0]), float(args[1]) / 1000
            put_at = []
            started = time.monotonic()
            for i in range(samples):
                before = time.time()
                target.put_one(i)
                put_at.append((before, time.time()))
                # The workload: puts start INTERVAL_MS apart (back to back if a put is slower).
                time.sleep(max(0.0, started + (i + 1) * interval - time.monotonic()))
            print(json.dumps({"puts": put_at, "retries": target.retries}))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        target.close()


if __name__ == "__main__":
    main(sys.argv[1:])
