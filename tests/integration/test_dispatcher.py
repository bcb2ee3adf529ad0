"""The dispatcher in one process: polls, claims, pools, records, local (AC2-1 to AC2-14)."""

from __future__ import annotations

import datetime
import logging
import operator
import time
import uuid

import pytest
import transaction

import zasync
from zasync import ACTIVE, COMPLETED, PENDING, Failure, Job
from zasync.model.events import DispatcherActivated, DispatcherRegistered
from zasync.runtime import claim as claim_module
from zasync.runtime import dispatcher as dispatcher_module
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.testing import (
    running_dispatcher,
    wait_for,
    wait_for_annotation,
    wait_for_poll,
    wait_for_result,
)

import support


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    for d in list(dispatcher_module._registry.values()):
        if d.activated:
            d.stop(5)
    dispatcher_module.clear()


def test_construction(zasync_db):
    u = uuid.uuid4()
    d = Dispatcher(zasync_db, uuid=u, poll_interval=0.5)
    assert (d.db, d.UUID, d.poll_interval) == (zasync_db, u, 0.5)
    assert dispatcher_module.get(u) is d
    with pytest.raises(ValueError, match="dispatcher for this UUID is already registered"):
        Dispatcher(zasync_db, uuid=u)
    assert zasync.get_process_uuid() == Dispatcher(zasync_db).UUID


def test_connection_pool_accounting(zasync_db):
    assert zasync_db.getPoolSize() == 7
    # No agents: only the poll thread's and the heartbeat's connections are added.
    bare = Dispatcher(zasync_db, uuid=uuid.uuid4(), agents=[])
    bare.activate()
    assert zasync_db.getPoolSize() == 9
    bare.stop(5)
    assert zasync_db.getPoolSize() == 7
    # With an agent of 3 threads, its pool (made by the first poll) adds one each.
    d = Dispatcher(zasync_db, uuid=uuid.uuid4(), agents=[AgentSpec(threads=3)])
    d.activate()
    wait_for(lambda: zasync_db.getPoolSize() == 12, sync=None, message="pool not grown")
    d.stop(5)
    assert zasync_db.getPoolSize() == 7


def test_first_poll_without_queues(tmp_path):
    import ZODB
    from ZODB.FileStorage import FileStorage

    db = ZODB.DB(FileStorage(str(tmp_path / "Data.fs")))
    before = zasync.utcnow()
    d = Dispatcher(db, uuid=uuid.uuid4(), poll_interval=0.5)
    d.activate()
    try:
        poll = wait_for_poll(d, 0)
        assert dict(poll) == {}
        assert before <= poll.utc_timestamp <= zasync.utcnow()
    finally:
        d.stop(5)
        db.close()


def test_registration_activation_and_idle_poll(zasync_db, events, caplog):
    with caplog.at_level(logging.DEBUG, "zasync"), running_dispatcher(zasync_db, threads=3) as d:
        poll = wait_for_poll(d)
        conn = zasync_db.open()
        queue = zasync.get_queue(conn)
        assert list(queue.dispatchers) == [d.UUID]
        da = queue.dispatchers[d.UUID]
        assert da.UUID == d.UUID and da.activated
        assert da.last_ping.value is not None
        assert len([e for e in events if isinstance(e, DispatcherRegistered)]) == 1
        assert len([e for e in events if isinstance(e, DispatcherActivated)]) == 1
        assert dict(poll) == {
            "": {
                "main": {
                    "active jobs": [],
                    "error": None,
                    "len": 0,
                    "new jobs": [],
                    "size": 3,
                }
            }
        }
        conn.close()
    assert f"attempting to activate dispatcher {d.UUID}" in caplog.text
    assert "poll " in caplog.text


def test_job_runs_and_is_recorded(zasync_dispatcher, zasync_queue, caplog):
    caplog.set_level(logging.INFO, "zasync")
    job = zasync_queue.put(Job(operator.mul, 14, 3))
    transaction.commit()
    assert wait_for_result(job) == 42
    job_id = (int.from_bytes(job._p_oid, "big"), "unnamed")
    record = wait_for(
        lambda: (
            zasync_dispatcher.getJobInfo(*job_id)["completed"] is not None
            and zasync_dispatcher.getJobInfo(*job_id)
        ),
        sync=None,
    )
    assert record["result"] == "42" and record["failed"] is False
    assert record["quota names"] == ()
    assert all(record[k] is not None for k in ("started", "completed", "thread", "poll id"))
    assert any(
        job_id in p[""]["main"]["new jobs"] for p in zasync_dispatcher.iterPolls() if p.get("")
    )
    wait_for(lambda: "completed in thread" in caplog.text, sync=None)
    assert "starting in thread" in caplog.text
    assert "succeeded with result: 42" in caplog.text
    # the completed job was filed by the dispatcher
    agent = job.parent
    wait_for(lambda: job in list(agent.completed), message="never filed")
    assert len(agent) == 0


def test_poll_lookup(zasync_dispatcher):
    poll = wait_for_poll(zasync_dispatcher)
    assert zasync_dispatcher.getPollInfo(at=poll.key).key <= poll.key
    assert zasync_dispatcher.getPollInfo(at=poll.utc_timestamp).key >= poll.key
    with pytest.raises(ValueError, match="may only provide one of"):
        zasync_dispatcher.getPollInfo(at=1, before=2)


def test_failure_is_logged(zasync_dispatcher, zasync_queue, caplog):
    caplog.set_level(logging.ERROR, "zasync.events")
    job = zasync_queue.put(Job(operator.mul, 14, None))
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(TypeError)
    # logged by the worker right after its commit
    wait_for(lambda: f"{job!r} failed with traceback:" in caplog.text, sync=None)
    assert "in _run" in caplog.text


def test_job_puts_through_local_queue(zasync_dispatcher, zasync_queue):
    job = zasync_queue.put(support.put_through_local_queue)
    transaction.commit()
    assert wait_for_result(job) == 42


def test_live_annotations(zasync_dispatcher, zasync_queue):
    support.calls.clear()
    job = zasync_queue.put(support.live_conversation)
    transaction.commit()
    assert wait_for_annotation(job, "hello") == "from thread!"
    job.annotations["reply"] = "HIYA"
    transaction.commit()
    assert wait_for_result(job) == "reply is 'HIYA'.  Locally it is MISSING."
    assert support.calls == ["live_conversation"]  # live writes did not make it run again


def test_progress_is_visible(zasync_dispatcher, zasync_queue):
    job = zasync_queue.put(Job(support.report_progress, 5))
    transaction.commit()
    assert wait_for_result(job) == 5
    progress = job.get_annotation(
        zasync.local.PROGRESS if hasattr(zasync.local, "PROGRESS") else "zasync.progress"
    )
    assert progress["done"] == 5 and progress["total"] == 5 and progress["message"] == "step 5"


def test_local_outside_a_worker():
    assert zasync.local.getJob() is None and zasync.local.getQueue() is None
    assert zasync.local.getDispatcher() is None
    with pytest.raises(ValueError, match="not initialized"):
        zasync.local.setLiveAnnotation("x", 1)


def test_statistics_and_status(zasync_db, zasync_queue):
    with running_dispatcher(zasync_db, poll_interval=0.5) as d:
        good = [zasync_queue.put(Job(operator.mul, 2, i)) for i in range(3)]
        bad = zasync_queue.put(Job(operator.mul, 2, None))
        transaction.commit()
        for job in [*good, bad]:
            wait_for_result(job)
        wait_for(
            lambda: all(
                d.getJobInfo(int.from_bytes(j._p_oid, "big"))["completed"] for j in [*good, bad]
            ),
            sync=None,
        )
        stats = d.getStatistics()
        assert stats["started"] == 4 and stats["successful"] == 3 and stats["failed"] == 1
        assert stats["unknown"] == 0
        assert stats["shortest active"] is None and stats["longest active"] is None
        assert stats["shortest successful"] is not None
        assert stats["statistics start"] <= stats["statistics end"]
        status = d.getStatusInfo()
        assert status["status"] == "RUNNING"
        assert status["uuid"] == d.UUID
        assert status["poll interval"].total_seconds() == 0.5
    status = d.getStatusInfo()
    assert status["status"] == "STOPPED"
    assert status["time since last poll"] is None and status["uptime"] is None


def test_already_completed_job_is_filed(zasync_dispatcher, zasync_queue, caplog):
    with caplog.at_level(logging.ERROR, "zasync.events"):
        done = zasync_queue.put(Job(operator.mul, 21, 2))
        done.fail()  # completed while still queued
        after = zasync_queue.put(Job(operator.mul, 21, 2))
        transaction.commit()
        assert wait_for_result(after) == 42
        wait_for(lambda: "job already completed?" in caplog.text, sync=None)
    agent = zasync_queue.dispatchers[zasync_dispatcher.UUID]["main"]
    wait_for(lambda: len(agent) == 0)
    assert done.parent is agent


def test_async_job_through_the_dispatcher(zasync_dispatcher, zasync_queue):
    job = zasync_queue.put(support.async_mock_work)
    cb = job.addCallback(Job(support.multiply, 2))
    transaction.commit()
    assert wait_for_result(job) == 42
    assert wait_for_result(cb) == 84
    agent = zasync_queue.dispatchers[zasync_dispatcher.UUID]["main"]
    wait_for(lambda: len(agent) == 0, message="awaitable job never filed")


def test_put_in_this_process_starts_without_waiting_for_the_poll_interval(zasync_db, zasync_queue):
    with running_dispatcher(zasync_db, poll_interval=3600):
        started = time.monotonic()
        job = zasync_queue.put(support.mock_work)
        transaction.commit()
        assert wait_for_result(job, timeout=240) == 42
        assert time.monotonic() - started < 240  # far less than the poll interval, an hour


def test_many_jobs_with_prefetch(zasync_db, zasync_queue):
    with running_dispatcher(zasync_db, threads=4, prefetch=16):
        jobs = [zasync_queue.put(Job(operator.add, i, 1)) for i in range(200)]
        transaction.commit()
        results = [wait_for_result(j) for j in jobs]
    assert results == [i + 1 for i in range(200)]
    assert all(j.status == COMPLETED for j in jobs)


def test_graceful_stop_hands_back_unstarted_jobs(zasync_db, zasync_queue):
    support.events.clear()
    d = Dispatcher(
        zasync_db, uuid=uuid.uuid4(), poll_interval=0.2, agents=[AgentSpec(threads=1, prefetch=5)]
    )
    d.activate()
    blocker = zasync_queue.put(Job(support.block_until, "stop-test"))
    transaction.commit()
    # The blocker must hold the only thread before the others come: jobs put together
    # spread over lanes, and the claim takes them in lane order, not put order.
    assert support.event("stop-test-started").wait(30)
    waiting = [zasync_queue.put(support.mock_work) for _ in range(3)]
    transaction.commit()
    wait_for(lambda: all(j.status == ACTIVE for j in waiting), message="not claimed ahead")

    import threading

    stopper = threading.Thread(target=d.stop, kwargs={"grace": 30})
    stopper.start()
    time.sleep(0.2)  # let stop() take the backlog while the blocker runs (real threads)
    support.event("stop-test").set()
    stopper.join(60)
    assert d.activated is False
    assert wait_for_result(blocker) == 42  # finished within the grace period
    for job in waiting:
        transaction.begin()
        assert job.status == PENDING  # handed back, not interrupted
        assert job._retry_policy is None  # no interruption was counted
    assert f"zasync: hand back unstarted jobs of {d.UUID}" in _notes(zasync_db)
    dispatcher_module.pop(d.UUID)
    with running_dispatcher(zasync_db):
        assert [wait_for_result(j) for j in waiting] == [42, 42, 42]


def test_a_scheduled_job_waits_for_the_virtual_clock(zasync_dispatcher, zasync_queue):
    start = datetime.datetime(2026, 1, 5, 15, 50, tzinfo=datetime.UTC)
    due = start.replace(minute=56)
    zasync.testing.set_now(start)
    try:
        job = zasync_queue.put(Job(operator.mul, 6, 7), begin_after=due)
        transaction.commit()
        for _ in range(2):
            # Real polls happen, but the pinned clock says the job is not due.
            wait_for_poll(zasync_dispatcher)
            transaction.begin()
            assert job.status == PENDING
            zasync.testing.advance(datetime.timedelta(seconds=5))
        zasync.testing.set_now(due)
        assert wait_for_result(job) == 42
        assert zasync.clock.utcnow() >= job.begin_after == due
        assert job.active_start == due
    finally:
        zasync.testing.reset_now()


def test_live_status_and_records_of_an_active_job(zasync_dispatcher, zasync_queue):
    job = zasync_queue.put(Job(support.annotate_status_then_block, "ac2-16"))
    transaction.commit()
    assert wait_for_annotation(job, "status") == ACTIVE
    job_id = (int.from_bytes(job._p_oid, "big"), "unnamed")
    assert zasync_dispatcher.getActiveJobIds() == [job_id]
    record = zasync_dispatcher.getJobInfo(*job_id)
    assert record["completed"] is None and record["result"] is None
    support.event("ac2-16").set()
    assert wait_for_result(job) == 42
    record = wait_for(
        lambda: (
            zasync_dispatcher.getJobInfo(*job_id)["completed"] is not None
            and zasync_dispatcher.getJobInfo(*job_id)
        ),
        sync=None,
    )
    assert record["result"] == "42"
    wait_for(lambda: zasync_dispatcher.getActiveJobIds() == [], sync=None)


def test_a_claim_that_never_reached_the_threads_is_handed_back(
    zasync_db, zasync_queue, monkeypatch, caplog
):
    """A claim committed, but its answer was lost (a broken connection): nothing ran it."""
    from zasync.runtime.pool import AgentThreadPool

    real_assign = AgentThreadPool.assign
    dropped = []

    def lossy_assign(pool, item):
        if not dropped:
            dropped.append(item)  # in the database it is claimed; here, forgotten
            return
        real_assign(pool, item)

    monkeypatch.setattr(AgentThreadPool, "assign", lossy_assign)
    caplog.set_level(logging.WARNING, "zasync.events")
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.05):
        job = zasync_queue.put(Job(operator.mul, 6, 7))
        transaction.commit()
        assert wait_for_result(job) == 42
    assert dropped and dropped[0][0] == job._p_oid
    assert "never reached a thread" in caplog.text
    assert job._retry_policy is None or "interruptions" not in job._retry_policy.data


def test_jobs_just_finished_here_are_not_taken_for_orphans(zasync_db, zasync_queue, caplog):
    """A poll that began before a job's result commit sees it held and unfinished."""
    caplog.set_level(logging.WARNING, "zasync.events")
    with running_dispatcher(zasync_db, threads=4, poll_interval=0.05) as dispatcher:
        jobs = [zasync_queue.put(Job(operator.mul, n, 2)) for n in range(50)]
        transaction.commit()
        assert [wait_for_result(job) for job in jobs] == [n * 2 for n in range(50)]
        (pool,) = dispatcher.pools.values()
        assert all(pool.owns(job._p_oid) for job in jobs)  # remembered as run here
    assert "never reached a thread" not in caplog.text


def test_a_failed_claim_keeps_the_pools_and_their_running_jobs(
    zasync_db, zasync_queue, monkeypatch, caplog
):
    """A claim transaction that gives up must not retire the pools: their jobs run on."""
    real = claim_module.try_transaction_five_times
    failures = []

    def claim_fails_once(call, identifier, tm, reraise=(), note=""):
        if "claiming" in str(identifier) and failures == ["armed"]:
            failures.append("failed")
            return Failure(zasync.ZasyncError("five conflicts, say"))
        return real(call, identifier, tm, reraise=reraise, note=note)

    monkeypatch.setattr(claim_module, "try_transaction_five_times", claim_fails_once)
    caplog.set_level(logging.WARNING, "zasync.events")
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.05) as dispatcher:
        job = zasync_queue.put(Job(support.annotate_status_then_block, "failed-claim"))
        transaction.commit()
        assert wait_for_annotation(job, "status") == ACTIVE
        pool = dispatcher.pools[("", "main")]
        failures.append("armed")
        wait_for(lambda: failures[-1] == "failed", sync=None)
        wait_for_poll(dispatcher)
        wait_for_poll(dispatcher)  # polls after the failure see the job held and running
        assert dispatcher.pools[("", "main")] is pool
        support.event("failed-claim").set()
        assert wait_for_result(job) == 42
    assert "never reached a thread" not in caplog.text
    assert job._retry_policy is None or "interruptions" not in job._retry_policy.data


def test_a_job_handed_to_another_worker_mid_run_is_left_in_its_new_agent(
    zasync_db, zasync_queue, caplog
):
    """Its old worker stops it without parking it: it is not waiting for anything."""
    caplog.set_level(logging.WARNING, "zasync.events")
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.05) as dispatcher:
        job = zasync_queue.put(Job(support.annotate_status_then_block, "handed-over"))
        transaction.commit()
        assert wait_for_annotation(job, "status") == ACTIVE
        # Another worker takes it over (as after a false death), while it runs here.
        other = zasync_queue.dispatchers.register(uuid.UUID(int=7))
        other.ping_death_interval = datetime.timedelta(days=1)
        other["main"] = zasync.Agent(size=3)
        other.activate()
        old_agent = job.parent
        old_agent.remove(job)
        other["main"]._hold(job)
        transaction.commit()
        support.event("handed-over").set()  # its result commit here now conflicts
        wait_for(lambda: "was handed to another worker" in caplog.text, sync=None)
        wait_for_poll(dispatcher)
        transaction.begin()
        assert job.status == ACTIVE and job in list(other["main"])
        assert not other["main"].is_parked(job)  # still the new worker's to run


def test_a_claimed_job_asked_to_stop_before_it_starts_never_runs(zasync_db, zasync_queue):
    """Cancelled while it waited for a thread: it completes as cancelled, its code unrun."""
    with running_dispatcher(zasync_db, threads=1, prefetch=4, poll_interval=0.05):
        busy = zasync_queue.put(Job(support.annotate_status_then_block, "cancel-waiting"))
        transaction.commit()
        assert wait_for_annotation(busy, "status") == ACTIVE
        waiting = zasync_queue.put(Job(support.annotate_status_then_block, "never-released"))
        transaction.commit()
        wait_for(lambda: waiting.status == ACTIVE)  # claimed ahead; the only thread is busy
        assert zasync.cancel(waiting, "not needed") == "requested"
        support.event("cancel-waiting").set()
        result = wait_for_result(waiting)
        assert isinstance(result, Failure) and result.check(zasync.CancelledError)
        assert "not needed" in result.getErrorMessage()
        assert waiting.get_annotation("status") is None  # its code never ran
        assert wait_for_result(busy) == 42


def _resize(db, d, threads):
    from zasync.ops import actions

    actions.set_agent_size(db, "", str(d.UUID), "main", size=threads, threads=threads)
    pool = d.pools[("", "main")]
    wait_for(lambda: pool.getSize() == threads, sync=None, message="resize never applied")
    return pool


def _started_together(queue, prefix, count):
    """Put ``count`` jobs that block; True once all of them run at the same time."""
    jobs = [queue.put(Job(support.block_until, f"{prefix}-{i}")) for i in range(count)]
    transaction.commit()
    started = all(support.event(f"{prefix}-{i}-started").wait(30) for i in range(count))
    for i in range(count):
        support.event(f"{prefix}-{i}").set()
    for job in jobs:
        assert wait_for_result(job) == 42
    return started


def test_shrinking_idle_threads_stops_only_the_surplus(zasync_db, zasync_queue):
    """Each leaving thread used to queue more exit requests: 4 -> 1 ended with none."""
    from zasync.ops import live

    with running_dispatcher(zasync_db, threads=4, poll_interval=0.2) as d:
        pool = _resize(zasync_db, d, 1)
        wait_for(lambda: pool.thread_count() == 1, sync=None, message="surplus never left")
        wait_for(lambda: pool.backlog() == 0 and pool.queue.qsize() == 0, sync=None)
        assert sum(t.is_alive() for t in pool.threads) == 1
        assert live.status(d)["pools"] == [
            {
                "queue": "",
                "agent": "main",
                "size": 1,
                "threads": 1,
                "running": 0,
                "thread deaths": 0,
                "errors": 0,
                "timed out": 0,
                "abandoned threads": 0,
            }
        ]
        assert _started_together(zasync_queue, "idle-shrink", 1)


def test_resizing_busy_threads_down_and_up_loses_none(zasync_db, zasync_queue):
    """4 -> 1 -> 4 while all four run jobs: the exit requests of the shrink must not stop
    threads the growth kept, and the live view counts threads, not declarations."""
    from zasync.ops import live

    with running_dispatcher(zasync_db, threads=4, poll_interval=0.2) as d:
        busy = [zasync_queue.put(Job(support.block_until, f"busy-{i}")) for i in range(4)]
        transaction.commit()
        assert all(support.event(f"busy-{i}-started").wait(30) for i in range(4))
        pool = _resize(zasync_db, d, 1)
        assert pool.thread_count() == 4  # busy: three of them would leave when done
        pool = _resize(zasync_db, d, 4)
        assert pool.thread_count() == 4
        for i in range(4):
            support.event(f"busy-{i}").set()
        for job in busy:
            assert wait_for_result(job) == 42
        wait_for(lambda: pool.running == 0 and pool.queue.qsize() == 0, sync=None)
        assert pool.thread_count() == 4
        assert live.status(d)["pools"][0]["threads"] == 4
        assert _started_together(zasync_queue, "after-resize", 4)
        assert sum(t.is_alive() for t in pool.threads) == 4


def test_the_poll_loop_survives_an_error_outside_the_poll(zasync_db):
    """Only poll() was guarded: an error in the wait between polls ended the thread."""
    import threading

    class BrokenOnce(threading.Event):
        broken = False

        def wait(self, timeout=None):
            if not self.broken:
                self.broken = True
                raise RuntimeError("the wait broke")
            return super().wait(timeout)

    with running_dispatcher(zasync_db, poll_interval=0.1) as d:
        d._wake = BrokenOnce()
        d.wake()
        wait_for(lambda: d._wake.broken, sync=None)
        count = d.records.poll_count()
        wait_for_poll(d, count + 2)
        assert d.thread.is_alive() and not d.poll_thread_died
        assert d.getStatusInfo()["status"] == Dispatcher.RUNNING


def test_a_dead_poll_thread_is_reported(zasync_db, zasync_queue, caplog):
    from zasync.ops import live

    spec = AgentSpec(threads=1, filter=support.exit_in_poll_thread)
    with running_dispatcher(zasync_db, agents=[spec], poll_interval=0.1) as d:
        assert not d.poll_thread_died
        zasync_queue.put(Job(operator.mul, 6, 7))
        transaction.commit()
        wait_for(lambda: d.poll_thread_died, sync=None, message="the poll thread lives on")
        info = d.getStatusInfo()
        assert info["status"] == Dispatcher.DEAD == "DEAD"
        assert "a filter ended the poll thread" in info["poll thread error"]
        assert live.status(d)["status"] == "DEAD"
        assert "the poll thread of dispatcher" in caplog.text
    assert not d.poll_thread_died  # stopped


def test_a_sole_owner_takes_over_an_earlier_runs_record_at_once(zasync_db, zasync_queue):
    """Only a process that holds the file (sole_owner) may, and only a record from before it."""
    earlier = uuid.uuid4()

    def an_earlier_run_left_its_record_active():
        transaction.begin()
        record = zasync_queue.dispatchers.get(earlier)
        if record is None:  # (a record with no agents is falsy: no ``or`` here)
            record = zasync_queue.dispatchers.register(earlier)
        if not record.activated:
            record.activate()
        transaction.commit()
        return record

    an_earlier_run_left_its_record_active()
    cautious = Dispatcher(zasync_db, uuid=earlier, poll_interval=0.05)
    cautious.activate()
    wait_for_poll(cautious)
    assert not cautious._activated_queues  # refused: the record looks alive
    cautious.stop(5)
    dispatcher_module.clear()

    record = an_earlier_run_left_its_record_active()
    owner = Dispatcher(zasync_db, uuid=earlier, poll_interval=0.05, sole_owner=True)
    owner.activate()
    try:
        wait_for(lambda: owner._activated_queues, sync=None, message="never took over")
        transaction.begin()
        assert record.activated >= owner.activated  # its own activation, made now
        wait_for_poll(owner)
        assert owner._activated_queues  # it never takes over its own current record
    finally:
        owner.stop(5)


def test_the_connection_pool_has_room_for_every_thread(zasync_db, zasync_queue, caplog):
    with caplog.at_level(logging.WARNING, "ZODB.DB"), running_dispatcher(zasync_db, threads=8):
        jobs = [zasync_queue.put(Job(operator.mul, n, 2)) for n in range(20)]
        transaction.commit()
        assert [wait_for_result(job) for job in jobs] == [n * 2 for n in range(20)]
    assert "open connections with a pool_size" not in caplog.text


def _notes(db):
    records = db.storage.iterator()
    try:
        return [txn.description.decode() for txn in records]
    finally:
        records.close()


def test_claims_and_results_are_noted_in_the_transaction_log(zasync_db, zasync_queue):
    job = zasync_queue.put(Job(operator.mul, 6, 7))
    transaction.commit()
    with running_dispatcher(zasync_db) as dispatcher:
        assert wait_for_result(job) == 42
        uuid = dispatcher.UUID
    notes = _notes(zasync_db)
    assert f"zasync: claim by {uuid} in queue ''" in notes
    assert f"zasync: result of job {int.from_bytes(job._p_oid, 'big')}" in notes
    assert f"zasync: deactivate dispatcher {uuid}" in notes


def test_a_job_due_soon_starts_when_due_not_at_the_next_poll(zasync_db, zasync_queue):
    # A ten-minute poll interval: only the dispatcher's own timer can start it in time.
    with running_dispatcher(zasync_db, poll_interval=600):  # returns after its first poll
        job = zasync_queue.put(
            Job(operator.mul, 6, 7), begin_after=datetime.timedelta(milliseconds=300)
        )
        transaction.commit()
        assert wait_for_result(job, timeout=60) == 42
        assert job.active_start >= job.begin_after
