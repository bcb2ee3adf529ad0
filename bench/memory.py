"""Whether a worker's memory stays flat over many jobs: its resident size while it drains.

Enqueues N no-op jobs (default 100,000) on an embedded FileStorage file with no
worker running, then starts the real worker (``python -m zasync worker``, T
threads, default 8) and reads its resident size (``VmRSS`` in
``/proc/PID/status``) each time another tenth of the jobs has started.  Each job
appends one line to a file, so the harness knows how far the worker is without
opening the database.  Prints the samples and the growth from the first sample
taken once the caches are warm (20 % of the jobs) to the last.

Run: .venv/bin/python bench/memory.py [--jobs 100000] [--threads 8] [--batch 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE.parent / "src"))

import transaction  # noqa: E402

import zasync  # noqa: E402


def resident_kib(pid: int) -> int:
    """The process's resident set size in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def lines(path: Path) -> int:
    """How many lines the jobs have written so far."""
    try:
        with path.open("rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def enqueue(uri: str, count: int) -> None:
    """Put ``count`` no-op jobs, 1,000 per commit, with no worker running."""
    from peerjobs.zasync_jobs import drain

    opened = zasync.open_database(uri, serve=False)
    conn = opened.db.open()
    queue = zasync.install_queues(conn)[""]
    for start in range(0, count, 1000):
        for _ in range(min(1000, count - start)):
            queue.put(drain)
        transaction.commit()
    conn.close()
    opened.close()


def start_worker(uri: str, out: Path, threads: int, batch: int) -> subprocess.Popen[bytes]:
    """The real CLI worker on ``uri``, its drain jobs writing their lines to ``out``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "peers"), str(HERE.parent / "src")])
    env["PEERS_DRAIN_FILE"] = str(out)
    command = ["-m", "zasync", "-q", "--db", uri, "worker", "--threads", str(threads)]
    return subprocess.Popen(
        [sys.executable, *command, "--batch", str(batch)],
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zasync-memory-") as tmp:
        directory = Path(tmp)
        uri = f"file://{directory / 'Data.fs'}"
        out = directory / "started.txt"
        print(f"enqueueing {options.jobs:,} jobs ...", flush=True)
        enqueue(uri, options.jobs)
        worker = start_worker(uri, out, options.threads, options.batch)
        samples: list[tuple[int, int]] = []
        deadline = time.monotonic() + options.timeout
        try:
            for tenth in range(1, 11):
                target = options.jobs * tenth // 10
                while lines(out) < target:
                    if worker.poll() is not None:
                        raise SystemExit(f"the worker exited with {worker.returncode}")
                    if time.monotonic() > deadline:
                        raise SystemExit("timed out")
                    time.sleep(0.05)
                samples.append((lines(out), resident_kib(worker.pid)))
                print(f"  {samples[-1][0]:>9,} jobs started: {samples[-1][1] / 1024:7.1f} MiB")
        finally:
            worker.terminate()
            worker.wait(60)
    warm = samples[1][1]
    last = samples[-1][1]
    print(
        f"worker resident size over {options.jobs:,} jobs ({options.threads} threads, "
        f"batch {options.batch}): {warm / 1024:.1f} MiB at 20 % -> {last / 1024:.1f} MiB at "
        f"100 % ({(last - warm) / warm:+.1%}); peak sample "
        f"{max(kib for _, kib in samples) / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
