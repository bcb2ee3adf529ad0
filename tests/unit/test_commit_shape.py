"""How many commits a job costs, and the dispatcher's fast path.

A job with no callbacks stores its result and becomes COMPLETED in one
commit.  A job claimed and marked ACTIVE in the claim transaction runs with
``run_claimed`` and commits once.  In dispatcher threads, completion does not
touch the agent (the dispatcher files completed jobs later).
"""

from __future__ import annotations

import uuid

import pytest
import transaction

from zasync import ACTIVE, COMPLETED, Agent, BadStatusError, Job
from zasync.model import _context
from zasync.testing import count_commits

import support


@pytest.fixture
def counter():
    with count_commits() as c:
        yield c


def test_job_without_callbacks_commits_twice(root, counter):
    root["j"] = j = Job(support.mock_work)
    transaction.commit()
    counter.commits = 0
    assert j() == 42
    assert j.status == COMPLETED
    assert counter.commits == 2  # ACTIVE, then result + COMPLETED together


def test_job_with_a_callback_completes_after_it(root, counter):
    root["j"] = j = Job(support.mock_work)
    cb = j.addCallback(support.identity)
    transaction.commit()
    counter.commits = 0
    j()
    assert cb.result == 42 and j.status == COMPLETED
    assert counter.commits == 5  # j ACTIVE, j result, cb ACTIVE, cb result, j COMPLETED


def claimed_active(queue):
    da = queue.dispatchers.register(uuid.uuid4())
    da["main"] = agent = Agent()
    job = queue.put(support.mock_work)
    transaction.commit()
    assert agent.claimJob() is job
    job._status = ACTIVE.value  # what the dispatcher's claim does
    transaction.commit()
    return agent, job


def test_run_claimed_commits_once_and_files_when_not_deferred(queue, counter):
    agent, job = claimed_active(queue)
    counter.commits = 0
    assert job.run_claimed() == 42
    assert counter.commits == 1
    assert list(agent) == [] and list(agent.completed) == [job]


def test_deferred_filing_leaves_the_agent_alone(queue, counter):
    agent, job = claimed_active(queue)
    _context.set_filing_deferred(True)
    try:
        assert job.run_claimed() == 42
    finally:
        _context.set_filing_deferred(False)
    assert job.status == COMPLETED
    assert list(agent) == [job] and len(agent.completed) == 0
    transaction.commit()
    key = job.key
    assert key  # set in the result commit, from the completion time
    agent.jobCompleted(job)  # what the dispatcher's next claim transaction does
    assert list(agent.completed) == [job]
    assert job.key == key and not job._p_changed  # filing did not write the job again


def test_filing_picks_another_key_when_the_precomputed_one_is_taken(queue):
    agent, job = claimed_active(queue)
    other = Job(support.mock_work)
    queue._p_jar.add(other)
    other.key = 12345 << 4
    job.key = other.key
    agent.completed.add(other)
    agent.jobCompleted(job)
    assert job.key == other.key - 1
    assert list(agent.completed) == [job, other]  # a smaller key sorts as newer
    agent.completed.add(job)  # filing twice is harmless
    assert len(agent.completed) == 2


def test_run_claimed_needs_active(queue):
    job = queue.put(support.mock_work)
    with pytest.raises(BadStatusError, match="claimed job with ACTIVE status"):
        job.run_claimed()


def test_first_live_annotation_merges_with_the_jobs_own_commit(db, root):
    root["j"] = job = Job(support.mock_work)
    transaction.commit()
    job._status = ACTIVE.value
    other_tm = transaction.TransactionManager()
    other = db.open(transaction_manager=other_tm)
    try:
        other_tm.begin()
        other.get(job._p_oid).annotations["progress"] = 1  # creates the mapping
        other_tm.commit()
        transaction.commit()  # the job's own change: merged, not a conflict
        transaction.begin()
        assert job._status == ACTIVE.value and job.get_annotation("progress") == 1
    finally:
        other.close()


def test_other_concurrent_changes_to_a_job_still_conflict(db, root):
    from ZODB.POSException import ConflictError

    root["j"] = job = Job(support.mock_work)
    transaction.commit()
    job.failure_log_level = 10
    other_tm = transaction.TransactionManager()
    other = db.open(transaction_manager=other_tm)
    try:
        other_tm.begin()
        there = other.get(job._p_oid)
        there.failure_log_level = 20
        there.annotations["x"] = 1
        other_tm.commit()
        with pytest.raises(ConflictError):
            transaction.commit()
    finally:
        transaction.abort()
        other.close()
