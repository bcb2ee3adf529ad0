"""Death verdicts and deadlines with frozen workers and skewed clocks, in real processes.

A worker frozen by SIGSTOP wakes with its view of the database from before
the freeze; a worker whose clock is off (``tests/skewed.py``) judges other
machines' times with it.  Neither may declare a live sibling dead, nor expire
a job's start deadline early: liveness is judged in the database's time.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError
from ZODB.TimeStamp import TimeStamp

import zasync
from zasync import COMPLETED, Job, clock

from processes import TESTS, python_env
from workers import PATIENCE, WorkerProcess, client, wait_until

DEAD = "is dead; deactivating it"
REVIVED = "by another process; reactivating"


def commit_time(obj: object) -> datetime.datetime:
    """The database time of the commit that last wrote ``obj``."""
    obj._p_activate()  # type: ignore[attr-defined]
    seconds = TimeStamp(obj._p_serial).timeTime()  # type: ignore[attr-defined]
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def pings(uri: str) -> dict[object, datetime.datetime]:
    """Each active dispatcher's last ping, in database time."""
    with client(uri) as conn:
        queues = conn.root().get(zasync.KEY)
        if queues is None or "" not in queues:
            return {}
        queue = queues[""]
        return {
            key: commit_time(da.last_ping)
            for key, da in queue.dispatchers.items()
            if da.activated and da.last_ping.value is not None
        }


def wait_for_pings(uri: str, count: int, seconds: float) -> None:
    """Wait until ``count`` dispatchers are active and each has pinged ``seconds`` after now."""
    start = wait_until(lambda: len(pings(uri)) == count and pings(uri), message="never active")
    since = max(start.values()) + datetime.timedelta(seconds=seconds)

    def pinged() -> bool:
        times = pings(uri)
        return len(times) == count and all(t > since for t in times.values())

    wait_until(pinged, message="never pinged that long")


def put(uri: str, job: Job, **options: object) -> bytes:
    with client(uri) as conn:
        for attempt in transaction.manager.attempts():
            with attempt:
                zasync.install_queues(conn)[""].put(job, **options)
        return job._p_oid  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_frozen_worker_does_not_declare_its_live_sibling_dead(tmp_path, zeo_uri):
    frozen = WorkerProcess(zeo_uri, tmp_path / "frozen.log")
    live = WorkerProcess(zeo_uri, tmp_path / "live.log")
    try:
        wait_for_pings(zeo_uri, 2, 0)
        for cycle in range(1, 4):
            frozen.signal(signal.SIGSTOP)
            try:
                # Frozen past the death interval: the live sibling rightly takes over.
                # Judged means the deactivation committed (the live worker logs its verdict
                # before committing it, and a ping since makes that commit conflict).
                wait_until(lambda: len(pings(zeo_uri)) == 1, message="never judged")
            finally:
                frozen.signal(signal.SIGCONT)
            frozen.wait_for_log(REVIVED)
            wait_until(lambda: frozen.text().count(REVIVED) >= cycle, message="not revived")  # noqa: B023
            wait_for_pings(zeo_uri, 2, 3 * 1.5)
            assert DEAD not in frozen.text(), frozen.text()
            assert REVIVED not in live.text(), live.text()
    finally:
        frozen.signal(signal.SIGCONT)
        live.stop()
        frozen.stop()


@pytest.mark.slow
@pytest.mark.parametrize("skew", [45.0, -45.0])
def test_a_skewed_clock_causes_no_false_death(tmp_path, engine_uri, skew):
    """Clocks further apart than SKEW_BOUND, even: pings are judged in the database's time."""
    normal = WorkerProcess(engine_uri, tmp_path / "normal.log")
    skewed = WorkerProcess(engine_uri, tmp_path / "skewed.log", skew=skew)
    try:
        wait_for_pings(engine_uri, 2, 6 * 1.5)
        for worker in (normal, skewed):
            assert DEAD not in worker.text() and REVIVED not in worker.text(), worker.text()
        skewed.wait_for_log("differs from the database's")
        normal.kill()  # and a sibling that is dead is still found dead
        skewed.wait_for_log(DEAD)
    finally:
        skewed.stop()
        normal.stop()


@pytest.mark.slow
def test_a_worker_ahead_does_not_expire_start_deadlines_early(tmp_path, zeo_uri):
    worker = WorkerProcess(zeo_uri, tmp_path / "worker.log", skew=30.0)
    try:
        wait_for_pings(zeo_uri, 1, 0)
        oid = put(zeo_uri, Job(pow, 6, 2), begin_by=datetime.timedelta(seconds=10))

        def done() -> object:
            with client(zeo_uri) as conn:
                job = conn.get(oid)
                return job.status == COMPLETED and (job.result,)

        assert wait_until(done, message="never completed") == (36,)
    finally:
        worker.stop()


PUTTER = """
import sys, transaction, zasync
from zasync.storage.database import open_database
from zasync import Job
opened = open_database(sys.argv[1])
conn = opened.db.open()
queue = zasync.install_queues(conn)[""]
transaction.commit()
for _ in range(2):
    job = queue.put(Job(pow, 2, 3))
    transaction.commit()
print(int.from_bytes(job._p_oid, "big"))
conn.close()
opened.close()
"""


@pytest.mark.slow
def test_a_putter_ahead_stores_its_times_in_database_time(tmp_path, zeo_uri):
    script = tmp_path / "putter.py"
    script.write_text(PUTTER)
    done = subprocess.run(
        [sys.executable, str(TESTS / "skewed.py"), "60", "-m", "putter", zeo_uri],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=python_env(PYTHONPATH=f"{tmp_path}:{python_env()['PYTHONPATH']}"),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    oid = int(done.stdout.split()[-1])
    with client(zeo_uri) as conn:
        job = conn.get(oid.to_bytes(8, "big"))
        put_at = commit_time(job)
        assert abs(job.begin_after - put_at) < datetime.timedelta(seconds=5), (
            job.begin_after,
            put_at,
        )


# -- in one process: the rules behind the above -------------------------------------


def tid_at(moment: datetime.datetime) -> bytes:
    t = moment.astimezone(datetime.UTC)
    seconds = t.second + t.microsecond / 1e6
    return TimeStamp(t.year, t.month, t.day, t.hour, t.minute, seconds).raw()


def test_the_clock_follows_the_database_by_its_own_commits(caplog):
    assert clock.offset() is None
    ahead = clock.local_now() + datetime.timedelta(seconds=40)
    clock.note_commit(tid_at(ahead), clock.local_now())
    assert datetime.timedelta(seconds=39) < clock.utcnow() - clock.local_now()
    assert clock.utcnow() - clock.local_now() <= datetime.timedelta(seconds=40)
    clock.note_commit(tid_at(ahead), clock.local_now())  # the same commit again: nothing new
    clock.note_commit(tid_at(ahead + datetime.timedelta(seconds=1)), clock.local_now())
    warnings = [r for r in caplog.records if "differs from the database's" in r.getMessage()]
    assert len(warnings) == 1 and "behind" in warnings[0].getMessage()


def two_workers(conn: object) -> tuple[object, object, object]:
    queue = zasync.install_queues(conn)[""]
    first, second = sorted([uuid.uuid4() for _ in range(2)])
    for key in (first, second):
        da = queue.dispatchers.register(key)
        da.ping_death_interval = datetime.timedelta(microseconds=1)
        da.activate()
        da.last_ping.value = clock.utcnow()
    conn.transaction_manager.commit()  # type: ignore[attr-defined]
    return queue, first, second


def test_a_verdict_does_not_commit_if_the_sibling_pinged_since(db):
    judge_tm, sibling_tm = transaction.TransactionManager(), transaction.TransactionManager()
    judge, sibling = db.open(transaction_manager=judge_tm), db.open(transaction_manager=sibling_tm)
    queue, first, second = two_workers(judge)
    queue.dispatchers[first].last_ping.value = clock.utcnow()  # the judge pings later
    judge_tm.commit()
    judge_tm.begin()
    dispatchers = judge.root()[zasync.KEY][""].dispatchers
    assert dispatchers[second].last_ping.value is not None  # loaded in the judge's view
    # The sibling pings after the judge's view was taken...
    sibling_tm.begin()
    sibling.root()[zasync.KEY][""].dispatchers[second].last_ping.value = clock.utcnow()
    sibling_tm.commit()
    # ... so a verdict from that view (death interval 1 us: any commit since is enough)
    # must not stand.
    dispatchers.ping(first)
    assert not dispatchers[second].activated
    with pytest.raises(ConflictError):
        judge_tm.commit()
    judge_tm.abort()
    judge.close()
    sibling.close()


def test_a_view_taken_before_a_freeze_shows_no_sibling_dead(db):
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)  # a judge that is then frozen a while
    queue, first, second = two_workers(conn)
    for key in (first, second):
        queue.dispatchers[key].ping_death_interval = datetime.timedelta(seconds=0.2)
    tm.commit()
    tm.begin()
    dispatchers = conn.root()[zasync.KEY][""].dispatchers
    assert dispatchers[second].last_ping.value is not None  # loaded before the freeze
    frozen_until = clock.utcnow() + datetime.timedelta(seconds=0.5)
    wait_until(lambda: clock.utcnow() > frozen_until)  # "frozen": wall time passes
    dispatchers.ping(first)
    assert dispatchers[second].activated
    tm.abort()
    conn.close()


def test_a_measurement_made_while_busy_does_not_outweigh_one_made_while_idle():
    """Each measurement is a lower bound, late by however long the process took to read
    its clock: a worker busy draining a queue measured 140 ms late, and jobs put by
    others then waited 140 ms (they looked not yet due).  The best bound counts."""
    now = clock.local_now()
    database = now + datetime.timedelta(seconds=5)  # the database's clock: 5 s ahead
    clock.note_commit(tid_at(database), now + datetime.timedelta(milliseconds=1))  # idle
    for _ in range(4):  # busy: each read of the clock came 140 ms after the commit
        database += datetime.timedelta(seconds=1)
        clock.note_commit(
            tid_at(database),
            database - datetime.timedelta(seconds=5) + (datetime.timedelta(milliseconds=140)),
        )
    measured = clock.offset()
    assert measured is not None
    assert abs(measured - datetime.timedelta(seconds=5)) < datetime.timedelta(milliseconds=5)


def test_measurements_older_than_the_window_are_forgotten():
    """A clock stepped forward is followed once the older, higher bounds age out."""
    start = clock.local_now()
    clock.note_commit(tid_at(start + datetime.timedelta(seconds=5)), start)  # 5 s behind
    later = start + clock.SAMPLE_WINDOW + datetime.timedelta(seconds=1)
    clock.note_commit(tid_at(later), later)  # the local clock was set right meanwhile
    measured = clock.offset()
    assert measured is not None and abs(measured) < datetime.timedelta(milliseconds=5)


def test_a_claimer_whose_clock_estimate_lags_still_claims_a_job_it_sees_put(db):
    """A put's job is due at its put, which precedes the put's commit: a claimer whose
    transaction sees that commit knows the job is due, even if its own estimate of the
    database's clock is behind (seen: 140 ms behind, every job waited that long)."""
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    job = queue.put(zasync.Job(pow, 2, 3))
    conn.transaction_manager.commit()  # type: ignore[attr-defined]
    local = clock.local_now()
    clock.forget_offset()
    clock.note_commit(tid_at(local - datetime.timedelta(seconds=2)), local)  # 2 s behind
    assert clock.utcnow() < job.begin_after  # by its own estimate, not yet due
    conn.transaction_manager.begin()  # type: ignore[attr-defined]
    assert queue.claim_batch(1) == [job]
    conn.transaction_manager.abort()  # type: ignore[attr-defined]
    conn.close()
