"""Queues, ordering, claiming, quotas and refused input (spec 3-4, AC-33 to AC-42)."""

from __future__ import annotations

import datetime
import operator
import threading

import pytest
import transaction

import zasync
from zasync import (
    COMPLETED,
    NEW,
    PENDING,
    Failure,
    Job,
    NotPicklableError,
    Queue,
    Queues,
    TimeoutError,
    UnknownQuotaError,
    clock,
)

import support

UTC = datetime.UTC


def at(hour, minute, second=0):
    return datetime.datetime(2006, 8, 10, hour, minute, second, tzinfo=UTC)


def test_ac33_queues_mapping(conn):
    container = Queues()
    conn.root()["queues"] = container
    queue = Queue()
    container[""] = queue
    assert queue.name == "" and queue.parent is container
    assert len(queue) == 0 and not queue and list(queue) == []
    assert len(queue.dispatchers) == 0
    with pytest.raises(ValueError, match="value must be IQueue"):
        container["foo"] = None
    with pytest.raises(KeyError):
        container["foo"]
    assert container.get(2) is None
    assert container.keys() == [""]
    del container[""]
    assert queue.name is None and queue.parent is None
    assert container.copy is None


def test_install_queues_is_idempotent(conn, events):
    queues = zasync.install_queues(conn, "reports")
    transaction.commit()
    assert queues.keys() == ["", "reports"]
    assert len([e for e in events if type(e).__name__ == "ObjectAdded"]) == 3
    assert zasync.install_queues(conn, "reports") is queues
    assert zasync.get_queue(conn, "reports") is queues["reports"]
    with pytest.raises(LookupError, match="no queue named 'nope'"):
        zasync.get_queue(conn, "nope")


def test_get_queues_without_install(conn):
    with pytest.raises(LookupError, match="install_queues"):
        zasync.get_queues(conn)


def test_ac34_put_and_claim(queue, now):
    job = queue.put(support.mock_work)
    assert len(queue) == 1 and queue[0] is job
    assert job.parent is queue and job.status == PENDING
    assert job.begin_after == now
    assert job.begin_by is None
    assert job.assignerUUID == zasync.get_process_uuid()
    assert queue.claim() is job
    assert job.parent is None and job.status == NEW
    assert len(queue) == 0 and queue.claim() is None


def test_put_joins_the_transaction(queue, conn):
    queue.put(support.mock_work)
    transaction.abort()
    assert len(queue) == 0
    job = queue.put(support.mock_work)
    transaction.commit()
    other = conn.db().open(transaction_manager=transaction.TransactionManager())
    try:
        assert [j._p_oid for j in zasync.get_queue(other)] == [job._p_oid]
    finally:
        other.close()


def test_ac35_scheduled_job_waits(queue, now):
    job = queue.put(support.mock_work, begin_after=at(16, 0))
    assert queue.claim() is None
    zasync.set_now(at(15, 59, 59))
    assert queue.claim() is None
    zasync.set_now(at(16, 0))
    assert queue.claim() is job


def test_ac36_ordering(queue):
    zasync.set_now(at(16, 0))
    job3 = queue.put(support.mock_work, begin_after=at(16, 2))
    job4 = queue.put(support.mock_work, begin_after=at(16, 1))
    job5 = queue.put(support.mock_work, begin_after=at(16, 0))
    assert list(queue) == [job5, job4, job3]
    pulled = queue.pull()
    assert pulled is job5 and pulled.status == NEW and pulled.assignerUUID is None
    assert queue.put(pulled) is pulled
    assert list(queue) == [job5, job4, job3]  # pull then put restores the order
    queue.remove(job5)
    job6 = queue.put(support.mock_work)
    assert list(queue) == [job6, job4, job3]
    job7 = queue.put(support.mock_work, begin_after=at(15, 35))
    assert list(queue) == [job6, job7, job4, job3]
    assert job7.begin_after == at(15, 35)  # kept for begin_by deadlines
    assert queue.pull(0) is job6
    assert queue.pull(-1) is job3
    assert queue[0] is job7 and queue[-1] is job4
    with pytest.raises(IndexError):
        queue[5]
    with pytest.raises(IndexError):
        queue.pull(7)


def test_ac37_time_zones_and_naive_values(queue, now):
    est = datetime.timezone(datetime.timedelta(hours=-5), "EST")
    job = queue.put(
        support.mock_work, begin_after=datetime.datetime(2006, 8, 10, 11, 30, tzinfo=est)
    )
    assert job.begin_after == at(16, 30)
    assert job.begin_after.tzinfo is UTC
    with pytest.raises(ValueError, match="cannot use timezone-naive values"):
        queue.put(support.mock_work, begin_after=datetime.datetime(2006, 8, 10, 16, 0))
    assert len(queue) == 1


def test_ac38_claim_due_jobs_then_filter(queue, now):
    due1 = queue.put(Job(operator.mul, 2, 3))
    due2 = queue.put(Job(operator.add, 2, 3))
    later_or = queue.put(Job(operator.or_, 2, 1), begin_after=now + datetime.timedelta(hours=1))
    queue.put(Job(operator.sub, 2, 1), begin_after=now + datetime.timedelta(hours=2))
    queue.put(Job(operator.and_, 2, 1), begin_after=now + datetime.timedelta(hours=2))
    assert queue.claim() is due1
    assert queue.claim() is due2
    assert queue.claim() is None
    zasync.clock.advance(datetime.timedelta(hours=3))
    assert queue.claim(support.only_or) is later_or
    assert queue.claim(support.only_or) is None
    assert len(queue) == 2


def test_ac39_quota_names(queue):
    job = queue.put(support.mock_work)
    with pytest.raises(ValueError) as info:
        job.quota_names = ("content catalog",)
    assert isinstance(info.value, UnknownQuotaError)
    assert info.value.name == "content catalog" and info.value.job is job
    assert info.value.queue is queue
    assert str(info.value).startswith("unknown quota name 'content catalog': create it")
    assert job.quota_names == ()
    new = Job(support.mock_work)
    new.quota_names = ["content catalog"]
    assert new.quota_names == ("content catalog",)
    with pytest.raises(ValueError) as info:
        queue.put(new)
    assert isinstance(info.value, UnknownQuotaError)
    assert info.value.name == "content catalog" and info.value.job is new
    assert info.value.queue is queue
    assert new.status == NEW and len(queue) == 1
    with pytest.raises(TypeError, match="provide an iterable of names"):
        new.quota_names = ""
    assert new.quota_names == ("content catalog",)


def test_ac40_quota_limits_claims(queue, now):
    quota = queue.quotas.create("content catalog", 1)
    assert quota.name == "content catalog" and quota.parent is queue.quotas
    assert quota.size == 1 and list(quota) == [] and not quota.filled
    job4 = queue.put(support.mock_work, quota_names=("content catalog",))
    job3 = queue.put(support.mock_work, quota_names=("content catalog",))
    other = queue.put(support.mock_work)
    transaction.commit()
    assert queue.claim() is job4
    assert list(quota) == [job4] and quota.filled
    assert queue.claim() is other  # job3 keeps its place, others pass
    assert queue.claim() is None
    transaction.commit()
    assert job4() == 42
    assert queue.claim() is job3


def test_ac41_quota_resize_and_removal(queue, now):
    queue.quotas.create("q", 2)
    jobs = [queue.put(support.mock_work, quota_names=("q",)) for _ in range(3)]
    transaction.commit()
    assert queue.claim() is jobs[0]
    assert queue.claim() is jobs[1]
    assert queue.claim() is None
    quota = queue.quotas["q"]
    quota.size = 1
    assert quota.filled
    transaction.commit()
    jobs[0]()
    assert queue.claim() is None
    jobs[1]()
    assert queue.claim() is jobs[2]
    later = queue.put(support.mock_work, quota_names=("q",))
    queue.quotas.remove("q")
    assert queue.claim() is later  # a removed quota is ignored
    with pytest.raises(ValueError, match="quota size must be"):
        quota.size = -1
    with pytest.raises(KeyError):
        queue.quotas.remove("q")


def test_b21_creating_an_existing_quota_is_refused(queue):
    queue.quotas.create("q", 1)
    with pytest.raises(ValueError, match="already exists"):
        queue.quotas.create("q", 5)
    assert queue.quotas["q"].size == 1


def test_quota_add_errors(queue):
    quota = queue.quotas.create("q", 1)
    with pytest.raises(ValueError, match="must be IJob"):
        quota.add(object())
    with pytest.raises(ValueError, match="quota name must be in quota_names"):
        quota.add(Job(support.mock_work))
    a, b = Job(support.mock_work), Job(support.mock_work)
    a.quota_names = b.quota_names = ("q",)
    quota.add(a)
    quota.add(a)  # idempotent
    assert len(quota) == 1
    with pytest.raises(ValueError, match="Quota is filled"):
        quota.add(b)


def test_b3_quota_clean_removes_every_finished_job(queue):
    quota = queue.quotas.create("q", 5)
    jobs = []
    for _ in range(4):
        j = Job(support.mock_work)
        j.quota_names = ("q",)
        queue.put(j)
        jobs.append(j)
    transaction.commit()
    claimed = [queue.claim() for _ in range(4)]
    assert claimed == jobs
    transaction.commit()
    jobs[0]()
    jobs[2]()
    jobs[3]()
    quota.clean()
    assert list(quota) == [jobs[1]]


def test_ac42_start_deadline(queue, now):
    job = queue.put(support.mock_work, begin_by=datetime.timedelta(hours=1))
    transaction.commit()
    zasync.clock.advance(datetime.timedelta(hours=1, seconds=1))
    wrapper = queue.claim()
    assert wrapper is not job
    assert wrapper.callable == job.fail
    assert wrapper.parent is None and wrapper.begin_after == zasync.utcnow()
    assert len(queue) == 0
    assert job.parent is wrapper
    transaction.commit()
    wrapper()
    assert job.status == COMPLETED
    assert isinstance(job.result, Failure)
    assert job.result.check(TimeoutError)
    assert "zasync.errors.TimeoutError" in job.result.getTraceback()


def test_b20_rejected_timeout_wrapper_leaves_job_alone(queue, now):
    job = queue.put(support.mock_work, begin_by=datetime.timedelta(minutes=1))
    zasync.clock.advance(datetime.timedelta(hours=1))
    assert queue.claim(support.only_or) is None
    assert job.parent is queue and job.status == PENDING


def test_put_back_goes_to_the_front(queue, now):
    first = queue.put(support.mock_work)
    second = queue.put(support.mock_work)
    transaction.commit()
    claimed = queue.claim()
    assert claimed is first
    queue.putBack(first)
    assert list(queue) == [first, second]
    with pytest.raises(ValueError, match="NEW status"):
        queue.putBack(second)
    with pytest.raises(ValueError, match="put in a queue before"):
        queue.putBack(Job(support.mock_work))


# -- refused input changes nothing ------------------------------------------------


def _local_function():
    def inner():
        return 1

    return inner


@pytest.mark.parametrize(
    "make_job, message",
    [
        (lambda: Job(lambda: 1), "the callable"),
        (lambda: Job(_local_function()), "the callable"),
        (lambda: Job(support.show, threading.Lock()), "argument 0"),
        (lambda: Job(support.show, key=_local_function()), "keyword argument 'key'"),
    ],
)
def test_unpicklable_jobs_are_refused_by_put(queue, make_job, message):
    job = make_job()
    with pytest.raises(NotPicklableError, match=message):
        queue.put(job, failure_log_level=50, quota_names=())
    assert len(queue) == 0 and list(queue) == []
    assert job.status == NEW and job.parent is None and job.begin_after is None
    assert job.failure_log_level is None  # B-24: a refused put changes nothing
    assert job._p_jar is None


def test_unpicklable_callback_is_refused(queue):
    job = Job(support.mock_work)
    with pytest.raises(NotPicklableError):
        job.addCallback(lambda r: r)
    assert job.callbacks == ()


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"begin_after": datetime.datetime(2020, 1, 1)}, ValueError, "timezone-naive"),
        ({"begin_by": datetime.timedelta(seconds=-1)}, ValueError, "negative values"),
        ({"begin_by": 5}, TypeError, "timedelta"),
        ({"quota_names": "catalog"}, TypeError, "iterable of names"),
        ({"quota_names": ("missing",)}, ValueError, "unknown quota name"),
        ({"failure_log_level": "loud"}, TypeError, "logging level"),
        ({"retry_policy_factory": 42}, TypeError, "registered name or a callable"),
    ],
)
def test_bad_put_options_are_refused_and_change_nothing(queue, options, error, message):
    job = Job(support.mock_work)
    with pytest.raises(error, match=message):
        queue.put(job, failure_log_level=logging_level(options), **_without_level(options))
    assert len(queue) == 0
    assert job.status == NEW and job.begin_after is None and job.begin_by is None
    assert job.quota_names == () and job.retry_policy_factory is None


def logging_level(options):
    return options.get("failure_log_level", 40)


def _without_level(options):
    return {k: v for k, v in options.items() if k != "failure_log_level"}


def test_already_queued_job_is_refused(queue):
    job = queue.put(support.mock_work)
    with pytest.raises(ValueError, match="cannot add already-assigned job"):
        queue.put(job)
    assert len(queue) == 1


def test_non_callable_is_refused(queue):
    with pytest.raises(TypeError, match="neither a job nor callable"):
        queue.put(42)
    assert len(queue) == 0


def test_unstored_queue_refuses_put():
    with pytest.raises(zasync.ZasyncError, match="not stored in a database"):
        Queue().put(support.mock_work)


def test_remove_unknown_job(queue):
    with pytest.raises(ValueError, match="is not in this queue"):
        queue.remove(Job(support.mock_work))


def test_begin_by_and_begin_after_setters(queue):
    job = queue.put(support.mock_work)
    job.begin_by = datetime.timedelta(minutes=5)  # allowed while PENDING
    with pytest.raises(zasync.BadStatusError, match="begin_after when a job has NEW status"):
        job.begin_after = zasync.utcnow()
    queue.claim()
    transaction.commit()
    job()
    with pytest.raises(zasync.BadStatusError, match="begin_by when a job has NEW or PENDING"):
        job.begin_by = None
    with pytest.raises(zasync.BadStatusError, match="quota_names when a job has NEW or PENDING"):
        job.quota_names = ()


def test_claim_with_a_lane_still_takes_put_backs_first_and_all_due_jobs(queue, now):
    jobs = [queue.put(support.mock_work) for _ in range(20)]
    transaction.commit()
    first = queue.claim()
    queue.putBack(first)
    assert queue.claim(lane=3) is first  # put-backs come before any lane
    later = queue.put(support.mock_work, begin_after=now + datetime.timedelta(hours=1))
    claimed = [queue.claim(lane=3) for _ in range(19)]
    assert sorted(j._p_oid for j in claimed) == sorted(j._p_oid for j in jobs[1:])
    assert queue.claim(lane=3) is None  # the held job is not due
    assert list(queue) == [later]


def test_a_claimer_takes_its_own_lanes_first(queue, now):
    jobs = [queue.put(support.mock_work) for _ in range(200)]
    transaction.commit()
    lane = (int.from_bytes(jobs[0]._p_oid, "big") + 1) % 8  # any lane but the head's
    mine = [j for j in jobs if int.from_bytes(j._p_oid, "big") % 8 == lane]
    taken = [queue.claim(lane=lane) for _ in range(len(mine) + 1)]
    assert taken[:-1] == mine  # its own, in order, though others' are due as long
    assert taken[-1] is jobs[0]  # then the others', from the head


def test_a_lane_cannot_starve_the_head(queue, now):
    head = queue.put(support.mock_work)
    # A little more than the lead an own job has over others' (OWN_LEAD, a second).
    clock.advance(datetime.timedelta(seconds=1, microseconds=1))
    jobs = [queue.put(support.mock_work) for _ in range(200)]
    transaction.commit()
    lane = (int.from_bytes(head._p_oid, "big") + 1) % 8
    assert queue.claim(lane=lane) is head  # due a second longer: it goes first
    assert queue.claim(lane=lane) in jobs


def test_claim_batch_takes_due_jobs_in_order_with_quotas_and_filters(queue, now):
    import operator as op

    queue.quotas.create("one", 1)
    a = queue.put(Job(op.or_, 1, 2))
    b = queue.put(Job(op.or_, 1, 2), quota_names=("one",))
    c = queue.put(Job(op.or_, 1, 2), quota_names=("one",))
    d = queue.put(Job(op.add, 1, 2))
    e = queue.put(Job(op.or_, 1, 2))
    later = queue.put(Job(op.or_, 1, 2), begin_after=now + datetime.timedelta(hours=1))
    expired = queue.put(Job(op.or_, 1, 2), begin_by=datetime.timedelta(0))
    transaction.commit()
    zasync.clock.advance(datetime.timedelta(seconds=1))
    taken = queue.claim_batch(10, support.only_or)
    # b takes the quota and c waits; d is filtered out, and so is the job that
    # would fail the expired one (the filter sees that wrapper, not the job)
    assert taken == [a, b, e]
    assert list(queue) == [c, d, expired, later]
    assert queue.claim_batch(0) == []
    rest = queue.claim_batch(10)
    assert rest[0] is d and rest[1].callable == expired.fail and len(rest) == 2
    assert list(queue) == [c, later]


def test_next_due_after_names_the_first_job_still_to_come(queue, now):
    assert queue.next_due_after(now) is None  # an empty queue: nothing to wait for
    queue.put(Job(operator.mul, 1, 1))  # due now: not "to come"
    later = now + datetime.timedelta(minutes=5)
    soon = now + datetime.timedelta(seconds=30)
    queue.put(Job(operator.mul, 2, 2), begin_after=later)
    queue.put(Job(operator.mul, 3, 3), begin_after=soon)
    assert queue.next_due_after(now) == soon
    assert queue.next_due_after(soon) == later
    assert queue.next_due_after(later) is None
