"""Fault injection: real workers killed with ``kill -9`` and a database server restarted.

For each shared engine (a ZEO server, RelStorage on PostgreSQL), 3 worker
processes with 4 threads each run 2,000 jobs that change the database
(:func:`support.apply_effect`: a per-job counter and a shared log).  While
they run, a random worker is killed with SIGKILL and restarted three times,
and the database server is restarted once.  Afterwards, the suite checks and
prints: jobs lost, jobs whose effects were applied twice, jobs not final,
``NeverRetry`` jobs that were interrupted (they must fail with
``AbortedError`` and have no effect), and the time from a worker's death to
its jobs being taken over by a sibling.

The jobs (:func:`support.create_effect`) also create new persistent objects,
and the server's second restart is a ``kill -9`` (PostgreSQL: an
``immediate`` stop, its crash): a client that handed out an oid it had
prefetched before the restart would overwrite another job's object.

The embedded default gets a test of its own: ONE worker on a ``file://``
database, killed with ``kill -9`` five times and restarted each time, while
another process (``fault_putter.py``, a client of the worker's socket that
serves the file itself while the worker is down) puts 2,000 jobs in batches.
Its measure is the *stall* after each crash: from the ``kill -9`` to the
first job completed after it (as the worker notes right after the job's
commit; the worker is restarted at once, so this covers the new process's
start, its opening of the file and its taking back its own jobs).  The
start-to-first-completion time is recorded too.  For the shared engines,
the stall is the time from a worker's death to a sibling's taking over its
jobs, and the *server stall* the time from a server's having stopped (or
been killed) to the next job completed: its start, and the workers'
reconnecting.

The database server is private to the test (it is restarted), so PostgreSQL
runs in a cluster of its own here, made with Debian's ``initdb``.

Each test appends one JSON line with its counts and times to the file named
by ``$ZASYNC_FAULT_REPORT``, if set: ``bench/fault_campaign.py`` runs the
suite many times and aggregates them.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import transaction
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree

import zasync
from zasync import COMPLETED, AbortedError, Failure, Job, NeverRetry
from zasync.storage.database import open_database
from zasync.storage.embedded import served_socket

import support
from pgserver import PostgresServer, fresh_database
from processes import python_env
from workers import WorkerProcess, ZEOServer, client, free_port, wait_until

pytestmark = pytest.mark.slow

JOBS = 2000
WORKERS = 3
THREADS = 4
KILLS = 3
NEVER_RETRY_EVERY = 10  # every tenth job runs under NeverRetry
DEATH_INTERVAL = 1.5
SPREAD = 16  # the shared trees' keys are spread beforehand: 65536 / SPREAD of them

EMBEDDED_KILLS = 5
EMBEDDED_BATCH = 50  # jobs per put transaction
EMBEDDED_BACKLOG = 300  # the putter keeps the queue at most this long


def report(record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``$ZASYNC_FAULT_REPORT``, if set."""
    path = os.environ.get("ZASYNC_FAULT_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")


class Engine:
    """A database server the test may stop and start, and the URI workers use."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        if kind == "zeo":
            self.server = ZEOServer(directory / "Data.fs", free_port(), directory / "zeo.log")
        else:
            self.server = PostgresServer(free_port())
        self._database = None

    def start(self) -> str:
        self.server.start()
        if self.kind == "zeo":
            # Clients give up on a lost server after 1 s rather than 30 s.
            return f"{self.server.uri}?wait_timeout=1"
        self._database = fresh_database(self.server.uri)
        return self._database.__enter__()

    def restart(self, crash: bool = False) -> float:
        """Stop the server cleanly (or, with ``crash``, as a crash: ``kill -9``) and start it.

        Returns the time (``time.time()``) by which the server had stopped.
        """
        if isinstance(self.server, ZEOServer):
            self.server.kill() if crash else self.server.stop()
        else:
            self.server.stop("immediate" if crash else "fast")
        stopped = time.time()
        self.server.start()
        return stopped

    def stop(self) -> None:
        if self._database is not None:
            self._database.__exit__(None, None, None)
        if isinstance(self.server, PostgresServer):
            self.server.remove()
        else:
            self.server.stop()


def install_workload(conn: Any) -> None:
    """The queues, and what the jobs change: per-job counters, a shared log, new objects."""
    root = conn.root()
    zasync.install_queues(conn)
    counters = root["fault_counters"] = IOBTree()
    log = root["fault_log"] = OOBTree()
    objects = root["fault_objects"] = OOBTree()
    root["fault_batches"] = IOBTree()
    # Spread out beforehand, so that the jobs' appends (at random keys)
    # land in many buckets and rarely split one: the workload's own
    # structure should not be what makes its commits conflict.
    for prefix in range(0, 1 << 16, SPREAD):
        log[(f"{prefix:04x}", -1)] = 0
        objects[(f"{prefix:04x}", -1)] = None
    for number in range(JOBS):
        counters[number] = support.Counter()


def prepare(uri: str) -> list[bytes]:
    """Install the workload and put its jobs; return the jobs' oids in order."""
    oids = []
    with client(uri) as conn:
        install_workload(conn)
        queue = zasync.get_queue(conn)
        transaction.commit()
        for start in range(0, JOBS, 100):
            jobs = []
            for number in range(start, start + 100):
                options = {}
                if number % NEVER_RETRY_EVERY == 0:
                    options["retry_policy_factory"] = NeverRetry
                jobs.append(queue.put(Job(support.create_effect, number), **options))
            transaction.commit()
            oids.extend(job._p_oid for job in jobs)
    return oids


def effects(conn: Any) -> int:
    """How many job runs have committed their effects (the log's entries)."""
    return len(conn.root()["fault_log"]) - (1 << 16) // SPREAD


def effects_count(uri: str) -> int:
    with client(uri) as conn:
        return effects(conn)


def describe_unfinished(conn: Any, jobs: list[Any]) -> str:
    """What the jobs not yet COMPLETED are doing, for a failure message."""
    queue = zasync.get_queue(conn)
    lines = [f"queue length {len(queue)}"]
    for da in queue.dispatchers.values():
        lines.append(f"{da!r}: dead={da.dead} held={[len(a) for a in da.values()]}")
    for job in jobs:
        if job is not None and job.status != COMPLETED:
            lines.append(f"{job!r} {job.status} parent={job.parent!r} key={job._queue_key}")
    return "\n".join(lines[:60])


def all_final(uri: str, oids: list[bytes]) -> bool:
    """Every job of the workload is COMPLETED."""
    with client(uri) as conn:
        return all(conn.get(oid).status == COMPLETED for oid in oids)


def analyse(conn: Any, jobs: list[Any]) -> dict[str, Any]:
    """Count what went wrong with ``jobs`` (job ``n`` at index ``n``) and their effects.

    A None in ``jobs`` is a job never put.  lost: neither succeeded nor failed; doubled: effects applied more than
    once; stuck: not COMPLETED; failed: failed although not a NeverRetry job;
    never_retry_failed: NeverRetry jobs that failed (allowed: a kill or a
    server restart interrupted them), of which ``aborted`` with
    AbortedError; applied_without_success: a failed job's effects remained;
    missing_effect: a job succeeded without its effects exactly once;
    bad_objects: a job's new objects do not hold what it stored in them
    (an oid given out twice).
    """
    root = conn.root()
    counters, log, objects = root["fault_counters"], root["fault_log"], root["fault_objects"]
    entries: dict[int, int] = {}
    for _token, number in log.keys():  # noqa: SIM118 (a BTree)
        if number >= 0:
            entries[number] = entries.get(number, 0) + 1
    made: dict[int, int] = {}
    bad_objects = []
    for (token, number), mapping in objects.items():
        if number < 0:
            continue
        made[number] = made.get(number, 0) + 1
        if (
            mapping.get("token") != token
            or mapping.get("number") != number
            or list(mapping.get("items", ())[:1]) != [number]
        ):
            bad_objects.append((token, number, dict(mapping)))
    count = len(jobs)
    failed = {
        n: j.result for n, j in enumerate(jobs) if j is not None and isinstance(j.result, Failure)
    }
    failed_by_policy = [n for n in failed if n % NEVER_RETRY_EVERY == 0]
    succeeded = [n for n, j in enumerate(jobs) if j is not None and j.result == n]
    return {
        "jobs": count,
        "lost": [n for n in range(count) if n not in succeeded and n not in failed],
        "doubled": [
            n
            for n in range(count)
            if counters[n].value > 1 or entries.get(n, 0) > 1 or made.get(n, 0) > 1
        ],
        "stuck": [n for n, j in enumerate(jobs) if j is not None and j.status != COMPLETED],
        "failed": [
            (n, f.getErrorMessage() or repr(f))
            for n, f in failed.items()
            if n not in failed_by_policy
        ],
        "never_retry_failed": failed_by_policy,
        "aborted": [n for n, f in failed.items() if f.check(AbortedError)],
        "applied_without_success": [
            n for n in failed_by_policy if counters[n].value or entries.get(n) or made.get(n)
        ],
        "missing_effect": [
            n
            for n in succeeded
            if counters[n].value != 1 or entries.get(n) != 1 or made.get(n) != 1
        ],
        "bad_objects": bad_objects[:20],
    }


def record(test: str, engine: str, outcome: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The JSON line of one test's run: counts (lists become their lengths) and ``extra``."""
    line: dict[str, Any] = {"test": test, "engine": engine}
    for key, value in outcome.items():
        line[key] = len(value) if isinstance(value, list) else value
    line["examples"] = {
        key: value[:5] for key, value in outcome.items() if isinstance(value, list) and value
    }
    line.update(extra)
    return line


def assert_sound(outcome: dict[str, Any]) -> None:
    """The fault suite's verdict: nothing lost, doubled, stuck, failed or damaged."""
    assert outcome["failed"] == []
    assert outcome["lost"] == [] and outcome["doubled"] == [] and outcome["stuck"] == []
    assert outcome["applied_without_success"] == [] and outcome["missing_effect"] == []
    assert outcome["bad_objects"] == []


def held_by(uri: str, worker_uuid: str) -> int:
    """How many jobs the dispatcher ``worker_uuid`` still holds in its agents."""
    with client(uri) as conn:
        da = zasync.get_queue(conn).dispatchers.get(uuid.UUID(worker_uuid))
        return 0 if da is None else sum(len(agent) for agent in da.values())


def start_worker(
    uri: str, directory: Path, index: int, generation: int, batch: int = 1
) -> WorkerProcess:
    worker_uuid = str(uuid.uuid4())
    worker = WorkerProcess(
        uri,
        directory / f"worker{index}-{generation}.log",
        "--threads",
        str(THREADS),
        "--batch",
        str(batch),
        "--death-interval",
        str(DEATH_INTERVAL),
        "--uuid",
        worker_uuid,
        env={"ZASYNC_FAULT_COMMITS": str(commits_file(directory))},
    )
    worker.uuid = worker_uuid  # type: ignore[attr-defined]
    return worker


@pytest.mark.parametrize(
    "kind, batch",
    [("zeo", 1), ("postgres", 1), ("zeo", 16), ("postgres", 16)],
    ids=["zeo", "postgres", "zeo-batch", "postgres-batch"],
)
def test_kills_and_a_server_restart_lose_nothing_and_double_nothing(kind, batch, tmp_path):
    """Also with ``--batch 16``, the opt-in batch mode: its guarantees are the same here."""
    engine = Engine(kind, tmp_path)
    uri = engine.start()
    workers: list[WorkerProcess] = []
    rng = random.Random(kind)
    takeovers = []
    server_events: list[tuple[str, float]] = []
    started = time.monotonic()
    try:
        oids = prepare(uri)
        workers = [start_worker(uri, tmp_path, i, 0, batch) for i in range(WORKERS)]
        for worker in workers:
            worker.wait_for_log("worker ")
        # Kill a worker at 15%, 35% and 55% of the work; restart the server
        # at 45%, and crash it (kill -9) and restart it at 70%.
        plan = [
            (0.15, "kill"),
            (0.35, "kill"),
            (0.45, "restart"),
            (0.55, "kill"),
            (0.70, "crash"),
        ]
        for generation, (fraction, action) in enumerate(plan, start=1):
            wait_until(
                lambda f=fraction: effects_count(uri) >= f * JOBS,
                timeout=300,
                message=f"work never reached {fraction:.0%}",
            )
            if action in ("restart", "crash"):
                server_events.append((action, engine.restart(crash=action == "crash")))
                continue
            index = rng.randrange(WORKERS)
            victim = workers[index]
            if not held_by(uri, victim.uuid):
                index = max(range(WORKERS), key=lambda i: held_by(uri, workers[i].uuid))
                victim = workers[index]
            victim.kill()
            killed_at = time.monotonic()
            wait_until(lambda v=victim: held_by(uri, v.uuid) == 0, timeout=120)
            takeovers.append(time.monotonic() - killed_at)
            workers[index] = start_worker(uri, tmp_path, index, generation, batch)
        # The analysis below counts (and the assertion shows) jobs still not final.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: all_final(uri, oids), timeout=120, message="jobs never ended")
    finally:
        for worker in workers:
            worker.stop()
    try:
        with client(uri) as conn:
            jobs = [conn.get(oid) for oid in oids]
            outcome = analyse(conn, jobs)
            unfinished = describe_unfinished(conn, jobs) if outcome["stuck"] else ""
    finally:
        engine.stop()
    ends = completion_times(tmp_path)
    server_stalls = [first_after(ends, moment) for _action, moment in server_events]
    report(
        record(
            "workers_and_server",
            kind if batch == 1 else f"{kind}-batch",
            outcome,
            stalls=takeovers,
            stall_kind="death to take-over by a sibling",
            server_stalls=[stall for stall in server_stalls if stall is not None],
            server_stall_kind="server stopped or killed to the next job completion",
            seconds=time.monotonic() - started,
        )
    )
    print(
        f"\n[{kind}, batch {batch}] {JOBS} jobs creating objects, {WORKERS} workers x "
        f"{THREADS} threads, "
        f"{KILLS} kill -9, 1 server restart, 1 server kill -9: lost {len(outcome['lost'])}, "
        f"applied twice {len(outcome['doubled'])}, not final {len(outcome['stuck'])}, "
        f"failed {len(outcome['failed'])}, damaged objects {len(outcome['bad_objects'])}, "
        f"NeverRetry jobs failed {len(outcome['never_retry_failed'])} "
        f"({len(outcome['aborted'])} interrupted -> AbortedError, rolled back and not rerun), "
        f"death to takeover {', '.join(f'{t:.1f}' for t in takeovers)} s "
        f"(death interval {DEATH_INTERVAL} s), server restart and crash to the next job "
        f"completion {', '.join('-' if t is None else f'{t:.1f}' for t in server_stalls)} s"
    )
    assert outcome["stuck"] == [], unfinished
    assert_sound(outcome)
    assert len(takeovers) == KILLS


def lock_holder(path: Path) -> int | None:
    """The process id recorded in the file's lock (the holder's, while one holds it)."""
    try:
        return int(Path(f"{path}.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def observe(uri: str, path: Path, read: Any) -> Any:
    """``read(conn)`` through the socket of whichever process serves the file.

    None while nobody serves it: the test must not hold the file while the
    worker restarts.  (Should the server die between the look at its socket
    and the connection, the test opens the file itself for a moment, sees
    it, and lets it go at once.)
    """
    try:
        if served_socket(path) is None:
            return None
        opened = open_database(uri, serve=False, create=False)
    except Exception:
        return None
    try:
        if opened.kind != "file-client":
            return None
        conn = opened.db.open()
        try:
            return read(conn)
        finally:
            transaction.abort()
            conn.close()
    except Exception:
        return None
    finally:
        opened.close()


def put_jobs(conn: Any) -> list[Any]:
    """The jobs put so far, job ``n`` at index ``n``; None for those not put (yet)."""
    jobs: list[Any] = [None] * JOBS
    for batch in conn.root()["fault_batches"].values():
        for job in batch:
            jobs[job.args[0]] = job
    return jobs


def all_put_and_final(conn: Any) -> bool:
    jobs = put_jobs(conn)
    return all(job is not None and job.status == COMPLETED for job in jobs)


def embedded_worker(uri: str, directory: Path, generation: int) -> WorkerProcess:
    """A worker on the embedded file, as deployed: its UUID kept in a file beside it."""
    return WorkerProcess(
        uri,
        directory / f"worker-{generation}.log",
        "--threads",
        str(THREADS),
        env={"ZASYNC_FAULT_COMMITS": str(commits_file(directory))},
    )


def commits_file(directory: Path) -> Path:
    """Where the workers note each job's commit (:func:`support.note_commit`)."""
    return directory / "commits.txt"


def completion_times(directory: Path) -> list[float]:
    """When jobs completed, sorted (seconds since the epoch): their commits, as noted.

    Each is noted by the worker right after the commit of the job's effects
    and result (one transaction) succeeded: neither the job's
    ``active_end`` (set before its commit, which may fail) nor a
    transaction id's time (RelStorage's need not be the commit's) would do.
    """
    path = commits_file(directory)
    if not path.exists():
        return []
    return sorted(float(line.split()[1]) for line in path.read_text().splitlines() if line)


def first_after(times: list[float], moment: float) -> float | None:
    """Seconds from ``moment`` to the first of the sorted ``times`` after it (None: none)."""
    index = bisect.bisect_right(times, moment)
    return None if index == len(times) else times[index] - moment


def test_the_embedded_worker_killed_five_times_while_another_process_puts_jobs(tmp_path):
    """One worker serving ``file://.../Data.fs``, killed with ``kill -9`` five times.

    Four kills come at 8%, 24%, 40% and 56% of the work, while the putter
    puts (it serves the file itself while the worker is down, so the
    restarted worker may be its client, and a later kill kills a client);
    the fifth once the putter has put everything and exited and the worker
    serves the file again (a kill of the file's owner).  Each kill is
    followed at once by a restart, and the next kill waits for a job
    completed after it.
    """
    path = tmp_path / "Data.fs"
    uri = f"file://{path}"
    started = time.monotonic()
    with open_database(uri, serve=False) as opened:
        conn = opened.db.open()
        install_workload(conn)
        transaction.commit()
        conn.close()
    worker = embedded_worker(uri, tmp_path, 0)
    worker.wait_for_log("worker ")
    putter_log = tmp_path / "putter.log"
    with open(putter_log, "ab") as out:
        putter = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parents[1] / "fault_putter.py"),
                uri,
                str(JOBS),
                str(EMBEDDED_BATCH),
                str(EMBEDDED_BACKLOG),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=python_env(),
        )
    kills: list[dict[str, Any]] = []

    def healthy() -> bool:
        """Raises if the current worker exited, or the putter failed; else True."""
        if worker.process.poll() is not None:
            raise AssertionError(
                f"the worker exited ({worker.process.returncode}):\n{worker.text()[-3000:]}"
            )
        if putter.poll() not in (None, 0):
            raise AssertionError(
                f"the putter failed ({putter.returncode}):\n{putter_log.read_text()[-3000:]}"
            )
        return True

    try:
        for generation, fraction in enumerate([0.08, 0.24, 0.40, 0.56, None], start=1):
            if fraction is None:
                putter.wait(300)
                wait_until(
                    lambda w=worker: healthy() and lock_holder(path) == w.process.pid,
                    timeout=120,
                    message="the worker never served the file again after the putter exited",
                )
            else:
                wait_until(
                    lambda f=fraction: healthy() and (observe(uri, path, effects) or 0) >= f * JOBS,
                    timeout=300,
                    message=f"work never reached {fraction:.0%}",
                )
            before = observe(uri, path, effects)
            serving = lock_holder(path) == worker.process.pid
            worker.kill()
            killed_at = time.time()
            worker = embedded_worker(uri, tmp_path, generation)
            kills.append({"killed": killed_at, "restarted": time.time(), "victim_served": serving})
            if fraction is not None and before is not None:
                wait_until(
                    lambda b=before: healthy() and (observe(uri, path, effects) or 0) > b,
                    timeout=300,
                    message="no job completed after the restart",
                )
        putter.wait(300)
        # The analysis below counts (and the assertion shows) jobs still not final.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: observe(uri, path, all_put_and_final), timeout=120)
        healthy()
    finally:
        worker.stop()
        if putter.poll() is None:
            putter.kill()
            putter.wait(30)
    with open_database(uri, serve=False) as opened:
        conn = opened.db.open()
        try:
            jobs = put_jobs(conn)
            outcome = analyse(conn, jobs)
            unfinished = describe_unfinished(conn, jobs) if outcome["stuck"] else ""
        finally:
            transaction.abort()
            conn.close()
    ends = completion_times(tmp_path)
    for kill in kills:
        kill["stall"] = first_after(ends, kill["killed"])
        kill["start_to_first"] = first_after(ends, kill["restarted"])
    stalls = [kill["stall"] for kill in kills]
    report(
        record(
            "embedded_kills",
            "embedded",
            outcome,
            stalls=[stall for stall in stalls if stall is not None],
            stall_kind="kill -9 to the next job completion",
            kills=kills,
            putter_exit=putter.returncode,
            seconds=time.monotonic() - started,
        )
    )
    shown = ", ".join("-" if stall is None else f"{stall:.1f}" for stall in stalls)
    print(
        f"\n[embedded] {JOBS} jobs creating objects put in batches of {EMBEDDED_BATCH} by "
        f"another process, 1 worker x {THREADS} threads killed {len(kills)} times "
        f"(it served the file: {[kill['victim_served'] for kill in kills]}): "
        f"lost {len(outcome['lost'])}, applied twice {len(outcome['doubled'])}, "
        f"not final {len(outcome['stuck'])}, failed {len(outcome['failed'])}, "
        f"damaged objects {len(outcome['bad_objects'])}, NeverRetry jobs failed "
        f"{len(outcome['never_retry_failed'])}, stall after each kill (kill -9 to the next "
        f"job completion) {shown} s"
    )
    assert putter.returncode == 0, putter_log.read_text()[-3000:]
    assert outcome["stuck"] == [], unfinished
    assert_sound(outcome)
    assert len(kills) == EMBEDDED_KILLS
    # The first four kills left jobs to do: a job completed after each.
    assert all(stall is not None for stall in stalls[:4]), stalls
