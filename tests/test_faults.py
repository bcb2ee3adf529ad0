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

The database server is private to the test (it is restarted), so PostgreSQL
runs in a cluster of its own here, made with Debian's ``initdb``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import transaction
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree

import zasync
from pgserver import PostgresServer, fresh_database
from workers import WorkerProcess, ZEOServer, client, free_port, wait_until
from zasync import COMPLETED, AbortedError, Failure, Job, NeverRetry

import support

pytestmark = pytest.mark.slow

JOBS = 2000
WORKERS = 3
THREADS = 4
KILLS = 3
NEVER_RETRY_EVERY = 10  # every tenth job runs under NeverRetry
DEATH_INTERVAL = 1.5


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

    def restart(self) -> None:
        self.server.stop()
        self.server.start()

    def stop(self) -> None:
        if self._database is not None:
            self._database.__exit__(None, None, None)
        if isinstance(self.server, PostgresServer):
            self.server.remove()
        else:
            self.server.stop()


def prepare(uri: str) -> list[bytes]:
    """Install the counters, the log and the jobs; return the jobs' oids in order."""
    oids = []
    with client(uri) as conn:
        root = conn.root()
        queue = zasync.install_queues(conn)[""]
        counters = root["fault_counters"] = IOBTree()
        log = root["fault_log"] = OOBTree()
        # Spread out beforehand, so that the jobs' appends (at random keys)
        # land in many buckets and rarely split one: the workload's own
        # structure should not be what makes its commits conflict.
        for prefix in range(0, 1 << 16, 16):
            log[(f"{prefix:04x}", -1)] = 0
        for number in range(JOBS):
            counters[number] = support.Counter()
        transaction.commit()
        for start in range(0, JOBS, 100):
            jobs = []
            for number in range(start, start + 100):
                options = {}
                if number % NEVER_RETRY_EVERY == 0:
                    options["retry_policy_factory"] = NeverRetry
                jobs.append(queue.put(Job(support.apply_effect, number), **options))
            transaction.commit()
            oids.extend(job._p_oid for job in jobs)
    return oids


def completed_count(uri: str) -> int:
    """Completed jobs of the workload (a rough progress measure: wrappers count too)."""
    with client(uri) as conn:
        queue = zasync.get_queue(conn)
        return sum(
            len(agent.completed) for da in queue.dispatchers.values() for agent in da.values()
        )


def describe_unfinished(uri: str, oids: list[bytes]) -> str:
    """What the jobs not yet COMPLETED are doing, for a failure message."""
    with client(uri) as conn:
        queue = zasync.get_queue(conn)
        lines = [f"queue length {len(queue)}"]
        for da in queue.dispatchers.values():
            lines.append(f"{da!r}: dead={da.dead} held={[len(a) for a in da.values()]}")
        for oid in oids:
            job = conn.get(oid)
            if job.status != COMPLETED:
                lines.append(f"{job!r} {job.status} parent={job.parent!r} key={job._queue_key}")
        return "\n".join(lines[:60])


def all_final(uri: str, oids: list[bytes]) -> bool:
    """Every job of the workload is COMPLETED."""
    with client(uri) as conn:
        return all(conn.get(oid).status == COMPLETED for oid in oids)


def held_by(uri: str, worker_uuid: str) -> int:
    """How many jobs the dispatcher ``worker_uuid`` still holds in its agents."""
    import uuid

    with client(uri) as conn:
        da = zasync.get_queue(conn).dispatchers.get(uuid.UUID(worker_uuid))
        return 0 if da is None else sum(len(agent) for agent in da.values())


def start_worker(uri: str, directory: Path, index: int, generation: int) -> WorkerProcess:
    import uuid

    worker_uuid = str(uuid.uuid4())
    worker = WorkerProcess(
        uri,
        directory / f"worker{index}-{generation}.log",
        "--threads",
        str(THREADS),
        "--death-interval",
        str(DEATH_INTERVAL),
        "--uuid",
        worker_uuid,
    )
    worker.uuid = worker_uuid  # type: ignore[attr-defined]
    return worker


@pytest.mark.parametrize("kind", ["zeo", "postgres"])
def test_kills_and_a_server_restart_lose_nothing_and_double_nothing(kind, tmp_path):
    engine = Engine(kind, tmp_path)
    uri = engine.start()
    workers: list[WorkerProcess] = []
    rng = random.Random(kind)
    takeovers = []
    try:
        oids = prepare(uri)
        workers = [start_worker(uri, tmp_path, i, 0) for i in range(WORKERS)]
        for worker in workers:
            worker.wait_for_log("worker ")
        # Kill at 15%, 35% and 55% of the work, restart the server at 45%.
        plan = [(0.15, "kill"), (0.35, "kill"), (0.45, "restart"), (0.55, "kill")]
        for generation, (fraction, action) in enumerate(plan, start=1):
            wait_until(
                lambda f=fraction: completed_count(uri) >= f * JOBS,
                timeout=300,
                message=f"work never reached {fraction:.0%}",
            )
            if action == "restart":
                engine.restart()
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
            workers[index] = start_worker(uri, tmp_path, index, generation)
        try:
            wait_until(lambda: all_final(uri, oids), timeout=120, message="jobs never ended")
        except AssertionError:
            raise AssertionError(describe_unfinished(uri, oids)) from None
    finally:
        for worker in workers:
            worker.stop()
    try:
        with client(uri) as conn:
            root = conn.root()
            counters, log = root["fault_counters"], root["fault_log"]
            entries: dict[int, int] = {}
            for _token, number in log.keys():  # noqa: SIM118 (a BTree)
                if number >= 0:
                    entries[number] = entries.get(number, 0) + 1
            jobs = [conn.get(oid) for oid in oids]
            not_final = [j for j in jobs if j.status != COMPLETED]
            failed = {n: j.result for n, j in enumerate(jobs) if isinstance(j.result, Failure)}
            # NeverRetry jobs may fail: interrupted by a kill (AbortedError), or
            # meeting the server's restart in their commit.  Either way their
            # effects must have been rolled back, and they must not run again.
            aborted = [n for n, f in failed.items() if f.check(AbortedError)]
            failed_by_policy = [n for n in failed if n % NEVER_RETRY_EVERY == 0]
            failed_otherwise = [
                (n, f.getErrorMessage() or repr(f))
                for n, f in failed.items()
                if n not in failed_by_policy
            ]
            doubled = [n for n in range(JOBS) if counters[n].value > 1 or entries.get(n, 0) > 1]
            succeeded = [n for n, j in enumerate(jobs) if j.result == n]
            lost = [n for n in range(JOBS) if n not in succeeded and n not in failed]
            applied_without_success = [
                n for n in failed_by_policy if counters[n].value or entries.get(n)
            ]
            missing_effect = [n for n in succeeded if counters[n].value != 1 or entries.get(n) != 1]
    finally:
        engine.stop()
    print(
        f"\n[{kind}] {JOBS} jobs, {WORKERS} workers x {THREADS} threads, {KILLS} kill -9, "
        f"1 server restart: lost {len(lost)}, applied twice {len(doubled)}, "
        f"not final {len(not_final)}, NeverRetry jobs failed {len(failed_by_policy)} "
        f"({len(aborted)} interrupted -> AbortedError, rolled back and not rerun), "
        f"death to takeover {', '.join(f'{t:.1f}' for t in takeovers)} s "
        f"(death interval {DEATH_INTERVAL} s)"
    )
    assert failed_otherwise == []
    assert lost == [] and doubled == [] and not_final == []
    assert applied_without_success == [] and missing_effect == []
    assert len(takeovers) == KILLS
