"""Where a worker's CPU goes, per job: the real CLI worker draining N jobs under py-spy.

Enqueues N no-op jobs (default 10,000) on an embedded file, starts
``python -m zasync worker --threads T`` (default 8), attaches ``py-spy record
--gil`` to it until every job has started, and prints the worker's CPU time
per job (from ``/proc/PID/stat``) split by what the sampled stacks were
doing.  With ``--svg FILE`` py-spy writes a flame graph instead of the table.

Needs py-spy (``.venv/bin/pip install py-spy``) and the right to trace the
worker (root, or ``kernel.yama.ptrace_scope=0``).

Run: .venv/bin/python bench/profile_worker.py [--jobs 10000] [--threads 8] [--batch 1] [--svg F]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from memory import enqueue, lines, start_worker  # noqa: E402

#: (part, pattern over a collapsed stack): the first pattern that matches wins.
PARTS = [
    ("calling the job's function", r"Job\._run .*peerjobs"),
    ("result commit: pickling", r"Job\._run .*TransactionManager\.commit.*ObjectWriter"),
    (
        "result commit: FileStorage writing and index",
        r"Job\._run .*TransactionManager\.commit.*(FileStorage|fsIndex|tpc_)",
    ),
    ("result commit: the rest of the two-phase commit", r"Job\._run .*TransactionManager\.commit"),
    ("job: storing the result", r"Job\._run"),
    ("thread: loading the job", r"AgentThreadPool\._load"),
    ("thread: checks before running", r"AgentThreadPool\._prepare"),
    ("thread: the rest", r"AgentThreadPool\._main"),
    ("claim: pickling claimed jobs", r"_claim_in.*commit.*ObjectWriter"),
    ("claim: the rest of its commit", r"_claim_in.*commit"),
    ("claim: filing and checking held jobs", r"_claim_in.*unit.*(unsound|jobCompleted|_orphaned)"),
    ("claim: choosing jobs", r"_claim_in.*unit"),
    ("poll: the rest", r"Dispatcher\._poll_loop"),
    ("embedded server loop", r"Acceptor\.loop|run_forever"),
    ("start-up (imports, opening)", r"_find_and_load|run_module|_run_module_as_main"),
]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split(raw: Path) -> dict[str, int]:
    """Samples per part, from py-spy's collapsed stacks (``-f raw``)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        part = next((name for name, pattern in PARTS if re.search(pattern, stack)), "other")
        counts[part] += int(number)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--svg", type=Path, default=None, help="write a flame graph here")
    options = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="zasync-profile-") as tmp:
        directory = Path(tmp)
        uri = f"file://{directory / 'Data.fs'}"
        out = directory / "started.txt"
        enqueue(uri, options.jobs)
        worker = start_worker(uri, out, options.threads, options.batch)
        raw = directory / "stacks.txt"
        target = options.svg if options.svg is not None else raw
        spy = subprocess.Popen(
            [py_spy, "record", "--gil", "-r", "250", "--pid", str(worker.pid), "-o", str(target)]
            + ([] if options.svg is not None else ["-f", "raw"]),
            stdout=subprocess.DEVNULL,
        )
        started = time.monotonic()
        try:
            while lines(out) < options.jobs:
                if worker.poll() is not None or time.monotonic() - started > 1800:
                    raise SystemExit("the worker exited or timed out")
                time.sleep(0.05)
            per_job = cpu_seconds(worker.pid) / options.jobs * 1e6
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            worker.terminate()
            worker.wait(60)
        print(
            f"{options.jobs:,} jobs, {options.threads} threads, batch {options.batch}: "
            f"{per_job:,.0f} µs of worker CPU per job"
        )
        if options.svg is not None:
            print(f"flame graph: {options.svg}")
            return
        counts = split(raw)
        total = sum(counts.values()) or 1
        print("| part | share | µs per job |\n|---|--:|--:|")
        for name in [name for name, _ in PARTS] + ["other"]:
            share = counts.get(name, 0) / total
            print(f"| {name} | {share:.1%} | {share * per_job:,.0f} |")


if __name__ == "__main__":
    main()
