"""Run the fault suite many times per engine and tabulate what went wrong, and the stalls.

A fault test that passed once proves little.  Each run of each engine is a
fresh pytest process running one fault test; the test appends its counts
and times as a JSON line to ``$ZASYNC_FAULT_REPORT`` (see
tests/faults/test_faults.py).  Engines:

* ``embedded``: one worker on ``file://…/Data.fs`` killed with ``kill -9``
  five times while another process puts 2,000 jobs; the stall is from the
  kill to the next job completed.
* ``zeo``, ``postgres``: 3 workers, 3 of them killed, the server restarted
  and crashed; the stall is from a worker's death to a sibling's taking over
  its jobs.
* ``disk`` (optional): the full-disk tests on a real tmpfs (needs root).
* ``frozen`` (optional): a worker frozen with SIGSTOP must not declare its
  live sibling dead.

The engines take turns (run 1 of each, then run 2 of each, …), so a
campaign cut short still covers them all.  It prints one line per run and a
table per engine, and writes everything, with the last lines of each failed
run's output, as JSON (rewritten after every run); a failed run's test
directory (worker, server and putter logs, the database) is kept under
``var/fault_campaign-<date>/`` (``--keep``)::

    .venv/bin/python bench/fault_campaign.py --runs 20 --engines embedded zeo postgres
    .venv/bin/python bench/fault_campaign.py --runs 3 --engines embedded disk frozen
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAULTS = "tests/faults/test_faults.py"
SELECTIONS = {
    "embedded": [
        f"{FAULTS}::test_the_embedded_worker_killed_five_times_while_another_process_puts_jobs"
    ],
    "zeo": [f"{FAULTS}::test_kills_and_a_server_restart_lose_nothing_and_double_nothing[zeo]"],
    "postgres": [
        f"{FAULTS}::test_kills_and_a_server_restart_lose_nothing_and_double_nothing[postgres]"
    ],
    # The opt-in batch mode (worker --batch 16) under the same kills and restarts.
    "zeo-batch": [
        f"{FAULTS}::test_kills_and_a_server_restart_lose_nothing_and_double_nothing[zeo-batch]"
    ],
    "postgres-batch": [
        f"{FAULTS}::test_kills_and_a_server_restart_lose_nothing_and_double_nothing[postgres-batch]"
    ],
    "disk": ["tests/faults/test_storage_faults.py", "-k", "full_disk"],
    "frozen": [
        "tests/faults/test_clocks.py::test_a_frozen_worker_does_not_declare_its_live_sibling_dead"
    ],
    # Scheduling: every tick once while the firing worker is killed; one job per unique key
    # under 4 racing processes; rate limits never exceeded; nothing a job stopped at its time
    # limit wrote is stored, its worker killed before or after the stop (each on ZEO and
    # PostgreSQL).
    "periodic": ["tests/faults/test_periodic_kills.py"],
    "unique": ["tests/faults/test_unique_processes.py"],
    "rate": ["tests/faults/test_rate_limit_workers.py"],
    "timelimit": ["tests/faults/test_time_limit_processes.py"],
}
#: The counts the fault tests report; a run with any of them non-zero went wrong.
COUNTS = ["lost", "doubled", "stuck", "failed", "bad_objects"]
#: A run's pytest process is killed after this many seconds.
RUN_TIMEOUT = 900.0
TAIL_LINES = 60


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (None for no values): p99 of 20 values is the largest."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def junit_outcomes(report: Path) -> dict[str, str]:
    """Test id -> passed / failed / error / skipped, from pytest's JUnit XML."""
    found: dict[str, str] = {}
    if not report.exists():  # pytest itself did not run to the end
        return found
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcome = next((t for t in ("failure", "error", "skipped") if t in tags), "passed")
        found[f"{case.get('classname')}::{case.get('name')}"] = {"failure": "failed"}.get(
            outcome, outcome
        )
    return found


def run_once(engine: str, number: int, scratch: Path, keep: Path, tail: int) -> dict[str, Any]:
    """One fresh pytest process running ``engine``'s fault test(s); what it reported.

    The test's directory (its worker, server and putter logs, the database
    file) is left in ``keep/<engine>-<number>`` when the run did not pass.
    """
    report = scratch / f"{engine}-{number}.jsonl"
    junit = scratch / f"{engine}-{number}.xml"
    output = scratch / f"{engine}-{number}.out"
    keep.mkdir(parents=True, exist_ok=True)
    basetemp = keep / f"{engine}-{number}"
    started = time.monotonic()
    env = dict(os.environ, ZASYNC_FAULT_REPORT=str(report))
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
               f"--junitxml={junit}", f"--basetemp={basetemp}", *SELECTIONS[engine]]  # fmt: skip
    with open(output, "wb") as out:
        try:
            code: int | str = subprocess.run(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                timeout=RUN_TIMEOUT, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = "timeout"
    tests = junit_outcomes(junit)
    lines = (
        [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    )
    if code == "timeout":
        verdict = "timeout"
    elif tests and all(outcome == "skipped" for outcome in tests.values()):
        verdict = "skipped"
    elif code == 0 and tests:
        verdict = "passed"
    else:
        verdict = "failed"
    result: dict[str, Any] = {
        "engine": engine,
        "run": number,
        "verdict": verdict,
        "exit": code,
        "seconds": round(time.monotonic() - started, 1),
        "tests": tests,
        "reports": lines,
    }
    if verdict in ("passed", "skipped"):
        shutil.rmtree(basetemp, ignore_errors=True)
    else:
        result["tail"] = output.read_text(errors="replace").splitlines()[-tail:]
        result["kept"] = str(basetemp)
    return result


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine's totals over its runs: verdicts, counts, stall percentiles."""
    totals: dict[str, Any] = {
        "runs": len(results),
        "passed": sum(r["verdict"] == "passed" for r in results),
        "skipped": sum(r["verdict"] == "skipped" for r in results),
    }
    reports = [line for r in results for line in r["reports"]]
    for key in COUNTS:
        totals[key] = sum(line.get(key, 0) for line in reports)
    totals["never_retry_failed"] = sum(line.get("never_retry_failed", 0) for line in reports)
    stalls = [stall for line in reports for stall in line.get("stalls", [])]
    totals["stalls"] = len(stalls)
    for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        value = percentile(stalls, fraction)
        totals[f"stall_{name}"] = None if value is None else round(value, 2)
    server_stalls = [stall for line in reports for stall in line.get("server_stalls", [])]
    for name, fraction in (("p50", 0.5), ("max", 1.0)):
        value = percentile(server_stalls, fraction)
        totals[f"server_stall_{name}"] = None if value is None else round(value, 2)
    totals["stall_kind"] = next(
        (line["stall_kind"] for line in reports if "stall_kind" in line), ""
    )
    seconds = [r["seconds"] for r in results]
    totals["seconds_per_run"] = round(sum(seconds) / len(seconds), 1) if seconds else None
    return totals


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """The per-engine table."""

    def shown(value: Any) -> str:
        return "-" if value is None else str(value)

    header = (
        f"{'engine':<9} {'runs':>4} {'passed':>6} {'lost':>5} {'twice':>5} {'stuck':>5} "
        f"{'failed':>6} {'damaged':>7} {'stalls':>6} {'p50 s':>6} {'p99 s':>6} {'max s':>6} "
        f"{'srv p50':>7} {'srv max':>7} {'s/run':>6}"
    )
    rows = [header]
    for engine, s in summaries.items():
        rows.append(
            f"{engine:<9} {s['runs']:>4} {s['passed']:>6} {s['lost']:>5} {s['doubled']:>5} "
            f"{s['stuck']:>5} {s['failed']:>6} {s['bad_objects']:>7} {s['stalls']:>6} "
            f"{shown(s['stall_p50']):>6} {shown(s['stall_p99']):>6} {shown(s['stall_max']):>6} "
            f"{shown(s['server_stall_p50']):>7} {shown(s['server_stall_max']):>7} "
            f"{shown(s['seconds_per_run']):>6}"
        )
    kinds: dict[str, list[str]] = {}
    for engine, s in summaries.items():
        if s["stall_kind"]:
            kinds.setdefault(s["stall_kind"], []).append(engine)
    rows.extend(f"  stall ({', '.join(names)}): {kind}" for kind, names in kinds.items())
    rows.append("  srv: a database server stopped or killed to the next job completion")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per engine")
    parser.add_argument(
        "--engines", nargs="+", default=["embedded", "zeo", "postgres"], choices=list(SELECTIONS)
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / f"fault_campaign-{stamp}.json"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=ROOT / "var" / f"fault_campaign-{stamp}",
        help="where a failed run's test directory (logs, database) is kept",
    )
    parser.add_argument(
        "--tail", type=int, default=TAIL_LINES, help="output lines kept per failure"
    )
    args = parser.parse_args()

    results: dict[str, list[dict[str, Any]]] = {engine: [] for engine in args.engines}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(1, args.runs + 1):
            for engine in args.engines:
                result = run_once(engine, number, Path(scratch), args.keep, args.tail)
                results[engine].append(result)
                stalls = [s for line in result["reports"] for s in line.get("stalls", [])]
                server = [s for line in result["reports"] for s in line.get("server_stalls", [])]
                counts = {
                    key: sum(line.get(key, 0) for line in result["reports"]) for key in COUNTS
                }
                bad = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                print(
                    f"run {number}/{args.runs} {engine:<9} {result['verdict']:<7} "
                    f"{result['seconds']:>5.0f} s  stalls {' '.join(f'{s:.1f}' for s in stalls)}"
                    + (f"  server {' '.join(f'{s:.1f}' for s in server)}" if server else "")
                    + (f"  [{bad}]" if bad else ""),
                    flush=True,
                )
                if result["verdict"] not in ("passed", "skipped"):
                    for line in result.get("tail", [])[-8:]:
                        print(f"    | {line}", flush=True)
                summaries = {engine: summary(runs) for engine, runs in results.items() if runs}
                args.json.write_text(
                    json.dumps(
                        {
                            "started": stamp,
                            "runs_per_engine": args.runs,
                            "engines": args.engines,
                            "elapsed_seconds": round(time.monotonic() - started),
                            "summary": summaries,
                            "runs": results,
                        },
                        indent=2,
                    )
                )
    with contextlib.suppress(OSError):
        args.keep.rmdir()  # if no run failed, nothing was kept
    summaries = {engine: summary(runs) for engine, runs in results.items()}
    print()
    print(table(summaries))
    print(f"\nwritten to {args.json}")
    failed = sum(s["runs"] - s["passed"] - s["skipped"] for s in summaries.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
