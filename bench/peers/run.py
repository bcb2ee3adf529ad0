"""zasync beside its peers: the same no-op workload through each queue library.

For every target (zasync on its storages, huey, dramatiq, Celery, RQ,
procrastinate, DBOS), on servers this command starts for itself on 127.0.0.1:

* drain: N no-op jobs are enqueued with no worker running, then ONE worker
  process with T threads starts (zasync-*-2: two processes of T threads each;
  RQ: a worker-pool of T processes); jobs/s = (N - 1) / (last - first job start).
* latency: into the idle worker (once its processes use under a tenth of a
  core and the machine under a quarter of one, after the drain and one
  warm-up job), SAMPLES jobs are put one at a
  time, INTERVAL_MS apart, from another process; put (committed/acknowledged)
  to job start, p50/p99/max.

Each job appends one line (its start time) to a file with one ``os.write``.
Also measured: the raw commit rates of the ZODB storages (FileStorage, ZEO,
RelStorage with 1 and 4 connections).  Writes bench/results/peers-*.json and
a Markdown table beside it (also printed), and the chart if matplotlib is in
the peers' environment.

Run: .venv/bin/python bench/peers/run.py [--jobs 10000] [--threads 8] [--samples 200]
     [--interval-ms 20] [--targets NAME ...] [--runs 1] [--out bench/results]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from servers import (  # noqa: E402
    PostgresServer,
    RedisServer,
    ZEOServer,
    kill_group,
    stop_process,
    wait_until,
)
from targets import TARGETS, Context, Target  # noqa: E402

PEERS_VENV = ROOT / "var" / "peers-venv"
REQUIREMENTS = HERE / "requirements.txt"
LIBRARIES = ["zasync", "ZODB", "ZEO", "RelStorage"]
PEER_LIBRARIES = ["huey", "dramatiq", "celery", "rq", "procrastinate", "dbos", "redis", "psycopg"]


# -- environments and machine ----------------------------------------------------------


def ensure_peers_venv() -> Path:
    """Create ``var/peers-venv`` with the pinned requirements (reused while they are unchanged)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        print(f"creating the peers' environment {PEERS_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted)
    return python


def versions(python: Path, names: list[str]) -> dict[str, str | None]:
    """The installed versions of ``names`` in the environment of ``python``."""
    code = (
        "import json, sys\n"
        "from importlib.metadata import version, PackageNotFoundError\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = version(n)\n"
        "    except PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *names], check=True, capture_output=True, text=True
    )
    result: dict[str, str | None] = json.loads(done.stdout)
    return result


def machine() -> dict[str, Any]:
    """CPU count and model, memory, OS and Python of this machine."""
    model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# -- measuring -------------------------------------------------------------------------


class LineFile:
    """A file that jobs append lines to, read incrementally by the harness."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()
        self._offset = 0
        self._partial = b""
        self.lines: list[str] = []

    def refresh(self) -> int:
        """Read what was appended since the last call; return the number of lines."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        return len(self.lines)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its descendants, in seconds."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs, not idle nor waiting), in seconds."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(
    pids: list[int],
    timeout: float,
    window: float = 0.5,
    share: float = 0.1,
    machine_share: float = 0.25,
    machine_patience: float = 30.0,
) -> tuple[float, bool]:
    """Wait until the workers, and if it comes soon the machine, are at rest.

    The latency phase puts jobs into an *idle* worker: after a drain a worker
    may still be committing and filing what it ran, and a database server
    writing back what the drain left.  At rest: ``pids`` (with their
    children) use under ``share`` of a core over ``window`` seconds (a
    RuntimeError after ``timeout``), and the whole machine under
    ``machine_share`` of one.  The machine is waited for at most
    ``machine_patience`` seconds: a process outside the benchmark must not
    stop it.  Returns the wait and whether the machine was at rest.
    """
    started = time.monotonic()
    previous = sum(cpu_seconds(pid) for pid in pids), machine_busy_seconds()
    while True:
        time.sleep(window)
        now = sum(cpu_seconds(pid) for pid in pids), machine_busy_seconds()
        waited = time.monotonic() - started
        workers_idle = now[0] - previous[0] < share * window
        machine_idle = now[1] - previous[1] < machine_share * window
        if workers_idle and (machine_idle or waited > machine_patience):
            return waited, machine_idle
        if waited > timeout:
            raise RuntimeError(f"the workers were still busy after {timeout:.0f} s")
        previous = now


def peak_rss_mb(pid: int) -> float | None:
    """The largest VmHWM (peak resident set) among ``pid`` and its descendants, in MiB."""
    peak = None
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kib = int(line.split()[1])
                    peak = max(peak or 0, kib)
    return None if peak is None else round(peak / 1024, 1)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def last_line(path: Path) -> str:
    """The last non-empty line of a log file (for a one-line failure reason)."""
    with contextlib.suppress(OSError):
        for line in reversed(path.read_text(errors="replace").splitlines()):
            if line.strip():
                return line.strip()[:300]
    return "(empty log)"


#: Log lines that are no problem: a worker saying it stops because the harness stopped it.
BENIGN = ("stopping gracefully",)


def error_line(text: str) -> str:
    """The line of a traceback naming the exception (the last such line), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (named or lines or ["(no output)"])[-1][:300]


def log_problems(directory: Path) -> list[str]:
    """Lines of the workers' logs that look like errors or warnings (at most 10)."""
    found: list[str] = []
    for log in sorted(directory.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(word in line for word in BENIGN):
                continue
            if any(word in line for word in ("Traceback", "Error", "ERROR", "WARNING", "warning")):
                found.append(f"{log.name}: {line.strip()[:300]}")
    return found[:10]


class TargetRun:
    """One target through the drain and the latency phases."""

    def __init__(self, target: Target, options: argparse.Namespace) -> None:
        self.target = target
        self.options = options
        assert target.context is not None
        self.context = target.context
        self.workers: list[subprocess.Popen[bytes]] = []

    def client(self, *args: str, timeout: float) -> str:
        """Run the target's client with ``args``; its standard output."""
        done = subprocess.run(
            [
                str(self.context.python(self.target.environment)),
                str(HERE / "client.py"),
                self.target.name,
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.context.process_env(),
            cwd=self.context.directory,
            timeout=timeout,
            start_new_session=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"client {args[0]} failed: {error_line(done.stderr)}")
        return done.stdout

    def check_workers(self) -> None:
        """RuntimeError if a worker has exited."""
        for k, worker in enumerate(self.workers):
            code = worker.poll()
            if code is not None:
                log = self.context.directory / f"worker-{k}.log"
                raise RuntimeError(f"worker {k} exited ({code}): {last_line(log)}")

    def wait_lines(self, lines: LineFile, count: int, what: str, timeout: float = 0.0) -> None:
        """Wait until ``lines`` has ``count`` lines (workers checked while waiting)."""

        def arrived() -> bool:
            self.check_workers()
            return lines.refresh() >= count

        timeout = max(timeout, self.options.timeout)
        wait_until(arrived, timeout, f"{what} never arrived", interval=0.05)

    def run(self) -> dict[str, Any]:
        """Both phases; the measurements (RuntimeError on a failure)."""
        options, context, target = self.options, self.context, self.target
        drain = LineFile(context.directory / "drain.lines")
        latency = LineFile(context.directory / "latency.lines")
        context.env.update(
            PEERS_DRAIN_FILE=str(drain.path),
            PEERS_LATENCY_FILE=str(latency.path),
            PEERS_THREADS=str(options.threads),
        )
        context.env.update(target.setup())
        result: dict[str, Any] = {}

        started = time.perf_counter()
        self.client("enqueue", str(options.jobs), timeout=options.timeout)
        result["enqueue_seconds"] = round(time.perf_counter() - started, 3)
        if drain.refresh():
            raise RuntimeError("jobs ran before any worker started")

        spawned = time.time()
        self.workers = [target.start_worker(options.threads, k) for k in range(target.workers)]
        self.wait_lines(
            drain,
            options.jobs,
            f"{options.jobs} drain jobs",
            target.drain_timeout(options.jobs, options.threads),
        )
        starts = sorted(float(line) for line in drain.lines)
        result["lines"] = len(starts)
        result["jobs_per_second"] = round((len(starts) - 1) / (starts[-1] - starts[0]), 1)
        result["drain_seconds"] = round(starts[-1] - starts[0], 3)
        result["spawn_to_last_seconds"] = round(starts[-1] - spawned, 3)
        result["spawn_to_first_seconds"] = round(starts[0] - spawned, 3)

        def ready() -> bool:
            self.check_workers()
            return target.ready()

        wait_until(
            ready,
            options.timeout,
            "the workers never became ready",
            interval=0.05,
        )
        self.client("warmup", timeout=options.timeout)
        self.wait_lines(latency, 1, "the warm-up job")
        waited, machine_idle = wait_idle([worker.pid for worker in self.workers], options.timeout)
        result["idle_wait_seconds"] = round(waited, 2)
        result["machine_idle"] = machine_idle  # False: something else kept the machine busy
        output = self.client(
            "latency", str(options.samples), str(options.interval_ms), timeout=options.timeout
        )
        client_report = json.loads(output.strip().splitlines()[-1])
        put_at = client_report["puts"]
        self.wait_lines(latency, options.samples + 1, f"{options.samples} latency jobs")
        started_at: dict[int, float] = {}
        for line in latency.lines:
            sample, when = line.split()
            started_at[int(sample)] = float(when)
        delays = [(started_at[i] - after) * 1000 for i, (_, after) in enumerate(put_at)]
        puts = [(after - before) * 1000 for before, after in put_at]
        result["latency_ms"] = {
            "p50": round(percentile(delays, 0.5), 2),
            "p99": round(percentile(delays, 0.99), 2),
            "max": round(max(delays), 2),
            "samples": len(delays),
            # Not part of put-to-start: how long each put itself took, in the client.
            "put_p50": round(percentile(puts, 0.5), 2),
            "put_retries": client_report["retries"],
            # Every sample, in put order: where the slow ones fall says more than p99.
            "each": [round(delay, 2) for delay in delays],
        }
        rss = [peak_rss_mb(worker.pid) for worker in self.workers]
        known = [value for value in rss if value is not None]
        result["peak_rss_mb"] = max(known) if known else None
        return result

    def stop(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after 30 s) and tear the target down."""
        try:
            for worker in self.workers:
                stop_process(worker, grace=self.target.stop_grace)
        finally:
            for worker in self.workers:
                kill_group(worker, wait=False)
            self.target.teardown()


def run_target(
    cls: type[Target], options: argparse.Namespace, base: Context, directory: Path
) -> dict[str, Any]:
    """One target, one run: its measurements, or ``status: failed`` with a one-line reason."""
    directory.mkdir(parents=True)
    context = dataclasses.replace(base, directory=directory, env={})
    result: dict[str, Any] = {
        "target": cls.name,
        "backend": cls.backend,
        "concurrency": cls.concurrency.replace("T", str(options.threads)),
        "worker_processes": cls.workers,
    }
    print(f"  {cls.name} ...", end="", flush=True)
    started = time.perf_counter()
    run = TargetRun(cls(context), options)
    try:
        result.update(run.run())
        result["status"] = "ok"
    except Exception as e:
        result["status"] = "failed"
        result["reason"] = " ".join(str(e).split())[:300] or type(e).__name__
    finally:
        run.stop()
        result["log_problems"] = log_problems(directory)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if result["status"] == "ok":
        print(
            f" {result['jobs_per_second']:,.0f} jobs/s, "
            f"p50 {result['latency_ms']['p50']:.1f} ms ({result['seconds']} s)"
        )
    else:
        print(f" failed: {result['reason']}")
    return result


def raw_commit_rates(
    options: argparse.Namespace,
    selected: list[type[Target]],
    directory: Path,
    postgres: PostgresServer | None,
) -> dict[str, float | str]:
    """Raw commit rates of the storages the selected zasync targets use (commits/s)."""
    from rawcommit import commit_rate

    import zasync

    names = {cls.name for cls in selected}
    rates: dict[str, float | str] = {}

    def measure(key: str, uri: str, connections: int = 1) -> None:
        try:
            opened = zasync.open_database(uri, serve=False)
            try:
                rates[key] = round(commit_rate(opened.db, options.raw_commits, connections), 1)
            finally:
                opened.close()
        except Exception as e:
            rates[key] = f"failed: {' '.join(str(e).split())[:200]}"

    measure("filestorage", f"file://{directory / 'raw' / 'Data.fs'}")
    if any(name.startswith("zasync-zeo") for name in names):
        with ZEOServer(ROOT / ".venv" / "bin" / "runzeo", directory / "raw-zeo") as zeo:
            measure("zeo", zeo.uri)
    if postgres is not None and any(name.startswith("zasync-pg") for name in names):
        for connections in (1, 4):
            database = f"raw_{uuid.uuid4().hex[:10]}"
            uri = postgres.create_database(database)
            try:
                measure(f"relstorage_{connections}conn", uri, connections)
            finally:
                postgres.drop_database(database)
    return rates


# -- summarising -----------------------------------------------------------------------


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target and per raw storage, the median of each figure over the runs that worked."""
    targets: dict[str, Any] = {}
    for name in [t["target"] for t in runs[0]["targets"]]:
        results = [t for run in runs for t in run["targets"] if t["target"] == name]
        ok = [t for t in results if t["status"] == "ok"]
        first = results[0]
        summary: dict[str, Any] = {
            key: first[key] for key in ("target", "backend", "concurrency", "worker_processes")
        }
        if not ok:
            summary.update(status="failed", reason=first.get("reason", "failed"))
        else:
            summary["status"] = (
                "ok" if len(ok) == len(results) else f"ok in {len(ok)}/{len(results)}"
            )

            def med(values: list[Any]) -> Any:
                known = [v for v in values if v is not None]
                return round(statistics.median(known), 2) if known else None

            for key in (
                "jobs_per_second",
                "drain_seconds",
                "spawn_to_last_seconds",
                "spawn_to_first_seconds",
                "enqueue_seconds",
                "peak_rss_mb",
            ):
                summary[key] = med([t.get(key) for t in ok])
            summary["latency_ms"] = {
                key: med([t["latency_ms"].get(key) for t in ok])
                for key in ("p50", "p99", "max", "put_p50")
            }
        targets[name] = summary
    raw: dict[str, Any] = {}
    for key in runs[0]["raw_commits_per_second"]:
        values = [run["raw_commits_per_second"].get(key) for run in runs]
        numbers = [v for v in values if isinstance(v, int | float)]
        raw[key] = round(statistics.median(numbers), 1) if numbers else values[0]
    return {"targets": targets, "raw_commits_per_second": raw}


# -- the command -----------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="drain jobs (default 10000)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads T (default 8)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples (default 200)")
    parser.add_argument("--interval-ms", type=float, default=20, help="between puts (default 20)")
    parser.add_argument(
        "--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS), metavar="NAME"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--raw-commits", type=int, default=2000, help="commits per raw rate (default 2000)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds any one wait may take (default 600)"
    )
    parser.add_argument("--png", type=Path, help="also draw the chart here (needs matplotlib)")
    options = parser.parse_args(argv)
    if options.jobs < 2 or options.samples < 1 or options.threads < 1 or options.runs < 1:
        parser.error("--jobs must be at least 2, --samples, --threads and --runs at least 1")
    return options


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def servers(needs: set[str]) -> Iterator[tuple[RedisServer | None, PostgresServer | None]]:
    """The shared servers the selected targets need (stopped on the way out)."""
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer()) if "redis" in needs else None
        postgres = stack.enter_context(PostgresServer()) if "postgres" in needs else None
        yield redis, postgres


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark; return the path of the JSON record."""
    options = parse(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    selected = [TARGETS[name] for name in TARGETS if name in options.targets]
    peers = [cls for cls in selected if cls.environment == "peers"]
    peers_python = ensure_peers_venv() if peers else None
    needs = {need for cls in selected for need in cls.needs}
    if any(cls.name.startswith("zasync-pg") for cls in selected):
        needs.add("postgres")
    project_python = ROOT / ".venv" / "bin" / "python"
    if not project_python.exists():
        project_python = Path(sys.executable)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record: dict[str, Any] = {
        "benchmark": "peers",
        "started": stamp,
        "machine": machine(),
        "versions": {
            "project": versions(project_python, LIBRARIES),
            "peers": versions(peers_python, PEER_LIBRARIES) if peers_python else {},
        },
        "parameters": {
            "jobs": options.jobs,
            "threads": options.threads,
            "samples": options.samples,
            "interval_ms": options.interval_ms,
            "runs": options.runs,
            "targets": [cls.name for cls in selected],
            "raw_commits": options.raw_commits,
        },
        "workload": report.WORKLOAD,
        "runs": [],
    }
    print(
        f"peers benchmark: {options.jobs:,} jobs, {options.threads} threads, "
        f"{options.samples} latency samples {options.interval_ms:g} ms apart, "
        f"{options.runs} run(s)",
        flush=True,
    )
    directory = Path(tempfile.mkdtemp(prefix="zasync-peers-"))
    directory.chmod(0o755)
    try:
        with servers(needs) as (redis, postgres):
            base = Context(
                directory=directory,
                project_python=project_python,
                peers_python=peers_python,
                bench_dir=HERE,
                redis_url=redis.url if redis else None,
                postgres=postgres,
                zeo_runzeo=project_python.parent / "runzeo",
            )
            for k in range(options.runs):
                print(f"run {k + 1} of {options.runs}:", flush=True)
                run_dir = directory / f"run-{k + 1}"
                raw = raw_commit_rates(options, selected, run_dir, postgres)
                print(f"  raw commits/s: {raw}", flush=True)
                results = [run_target(cls, options, base, run_dir / cls.name) for cls in selected]
                record["runs"].append({"targets": results, "raw_commits_per_second": raw})
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    record["median"] = median_run(record["runs"])
    record["ratios"] = report.ratios(record["median"])
    record["finished"] = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    options.out.mkdir(parents=True, exist_ok=True)
    path: Path = options.out / f"peers-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    table = report.markdown(record)
    path.with_suffix(".md").write_text(table)
    print()
    print(table)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    chart_python = peers_python or (PEERS_VENV / "bin" / "python")
    if options.png is not None and chart_python.exists():
        subprocess.run(
            [str(chart_python), str(HERE / "report.py"), str(path), "--png", str(options.png)],
            check=True,
        )
        print(f"wrote {options.png}")
    return path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: servers and workers stopped", file=sys.stderr)
        sys.exit(130)
