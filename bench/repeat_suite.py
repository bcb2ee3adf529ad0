"""Run a test selection many times and count, per test, how often it passed.

A fault test that passed once proves little.  This runs the selection (by
default the adversarial suite and the real-process poison, catastrophe and
fault tests) ``--runs`` times, each in a fresh pytest process, optionally
with a busy loop holding one core, and prints per-test counts, then writes
them as JSON::

    .venv/bin/python bench/repeat_suite.py --runs 10
    .venv/bin/python bench/repeat_suite.py --runs 5 --busy tests/faults/adversarial
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SELECTION = [
    "tests/faults/adversarial",
    "tests/faults/test_catastrophes.py",
    "tests/faults/test_faults.py",
]


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_core(enabled: bool) -> Iterator[None]:
    """Hold one core with a busy loop for the duration, if ``enabled``."""
    if not enabled:
        yield
        return
    spinner = multiprocessing.Process(target=_spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        spinner.terminate()
        spinner.join()


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Test id -> (passed / failed / error / skipped, first line of the failure message)."""
    found: dict[str, tuple[str, str]] = {}
    if not report.exists():  # pytest itself did not run to the end
        return found
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        children = {child.tag: child for child in case}
        outcome = next((t for t in ("failure", "error", "skipped") if t in children), "passed")
        message = "" if outcome == "passed" else children[outcome].get("message", "")
        label = {"failure": "failed"}.get(outcome, outcome)
        found[name] = (label, message.splitlines()[0][:300] if message else "")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("selection", nargs="*", default=DEFAULT_SELECTION)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="hold one core with a busy loop")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "repeat_suite.json")
    args = parser.parse_args()

    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: dict[str, list[str]] = collections.defaultdict(list)
    durations: list[float] = []
    with busy_core(args.busy), tempfile.TemporaryDirectory() as scratch:
        for run in range(1, args.runs + 1):
            report = Path(scratch) / f"run{run}.xml"
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 f"--junitxml={report}", *args.selection],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )  # fmt: skip
            durations.append(time.monotonic() - started)
            for name, (outcome, message) in outcomes(report).items():
                counts[name][outcome] += 1
                if message:
                    failures[name].append(f"run {run}: {message}")
            bad = sum(1 for c in counts.values() if c["failed"] or c["error"])
            print(f"run {run}/{args.runs}: {durations[-1]:.0f} s, failed so far: {bad}", flush=True)

    print(f"\n{'passed':>6} {'failed':>6} {'error':>5}  test")
    for name in sorted(counts, key=lambda n: (-counts[n]["failed"] - counts[n]["error"], n)):
        c = counts[name]
        print(f"{c['passed']:>6} {c['failed']:>6} {c['error']:>5}  {name}")
    for name, messages in sorted(failures.items()):
        print(f"\n{name}:")
        for message in messages:
            print(f"  {message}")
    total = sum(sum(c.values()) for c in counts.values())
    failed = sum(c["failed"] + c["error"] for c in counts.values())
    print(f"\n{len(counts)} tests x {args.runs} runs: {total} results, {failed} failed or errored")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "selection": args.selection,
                "runs": args.runs,
                "busy_core": args.busy,
                "seconds_per_run": durations,
                "tests": {name: dict(c) for name, c in sorted(counts.items())},
                "failures": dict(failures),
            },
            indent=2,
        )
    )
    print(f"written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
