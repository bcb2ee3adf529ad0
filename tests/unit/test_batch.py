"""Batch agents: several claimed jobs run in one transaction, each behind a savepoint.

What must hold (see zasync.model.batch): one commit for a batch of plain
jobs; a job that raises is rolled back alone and fails as it would alone;
callbacks run after the batch commits; a batch whose commit fails stores
nothing and hands every job back to run alone; an unstorable result fails
only its own job.
"""

from __future__ import annotations

import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync import ACTIVE, COMPLETED, Agent, Failure, NeverRetry
from zasync.model import _context
from zasync.model.batch import batchable, run_batch
from zasync.runtime.config import AgentSpec
from zasync.storage.watch import commit_watcher
from zasync.testing import count_commits, running_dispatcher, wait_for

import support
from support import PersistentDemo


def claim_all(queue, count_or_callables):
    """Put the jobs, claim them into one agent and mark them ACTIVE, as a claim does."""
    da = queue.dispatchers.register(uuid.uuid4())
    da["main"] = agent = Agent(size=100)
    jobs = [queue.put(zasync.Job(c, *args)) for c, *args in count_or_callables]
    transaction.commit()
    for _ in jobs:
        job = agent.claimJob()
        job._status = ACTIVE.value
    transaction.commit()
    return agent, jobs


@pytest.fixture
def deferred_filing():
    _context.set_filing_deferred(True)
    yield
    _context.set_filing_deferred(False)


def test_a_batch_of_plain_jobs_commits_once(queue, root, deferred_filing):
    root["demo"] = demo = PersistentDemo()
    transaction.commit()
    _agent, jobs = claim_all(queue, [(support.increment, demo)] * 5)
    with count_commits() as counter:
        run = run_batch(jobs, transaction.manager)
    assert counter.commits == 1
    assert [result for _job, result in run.results] == [1, 2, 3, 4, 5]
    assert run.again == []
    transaction.abort()
    assert demo.counter == 5
    assert all(job.status == COMPLETED for job in jobs)


def test_a_job_that_raises_is_rolled_back_alone_and_fails(queue, root, deferred_filing):
    root["demo"] = demo = PersistentDemo()
    root["other"] = other = PersistentDemo()
    transaction.commit()
    _agent, jobs = claim_all(
        queue,
        [(support.increment, other), (support.call_and_raise, demo), (support.increment, other)],
    )
    run = run_batch(jobs, transaction.manager)
    transaction.abort()
    assert demo.counter == 0  # the failing job's change was rolled back
    assert other.counter == 2  # the others' changes were stored
    assert isinstance(jobs[1].result, Failure)
    assert jobs[1].result.check(RuntimeError)
    assert [job.status for job in jobs] == [COMPLETED] * 3
    assert run.again == []


def test_callbacks_run_after_the_batch_commits(queue, deferred_filing):
    _agent, jobs = claim_all(queue, [(support.mock_work,), (support.mock_work,)])
    callback = jobs[0].addCallback(support.identity)
    transaction.commit()
    run_batch(jobs, transaction.manager)
    transaction.abort()
    assert callback.status == COMPLETED and callback.result == 42
    assert jobs[0].status == COMPLETED and jobs[1].result == 42


def test_after_a_conflict_at_the_batch_commit_each_retry_policy_decides(
    queue, root, deferred_filing
):
    root["demo"] = demo = PersistentDemo()
    transaction.commit()
    support.commit_failures.update(remaining=1, calls=0)
    _agent, jobs = claim_all(
        queue,
        [
            (support.increment, demo),
            (support.work_with_failing_commit, "conflict"),
            (support.increment, demo),
        ],
    )
    never = jobs[2]
    never.retry_policy_factory = NeverRetry
    transaction.commit()
    run = run_batch(jobs, transaction.manager)
    assert run.again == []
    transaction.abort()
    # The default policy ran the first two again; NeverRetry failed the third.
    assert demo.counter == 1
    assert jobs[0].result == 1 and jobs[1].result == 42
    assert isinstance(never.result, Failure) and never.result.check(ConflictError)
    assert [job.status for job in jobs] == [COMPLETED] * 3


def test_a_batch_commit_failing_otherwise_stores_nothing_and_hands_every_job_back(
    queue, root, deferred_filing
):
    root["demo"] = demo = PersistentDemo()
    transaction.commit()
    support.commit_failures.update(remaining=1, calls=0)
    _agent, jobs = claim_all(
        queue,
        [
            (support.increment, demo),
            (support.work_with_failing_commit, "value"),
            (support.increment, demo),
        ],
    )
    run = run_batch(jobs, transaction.manager)
    assert run.results == []
    assert run.again == jobs
    transaction.abort()
    assert demo.counter == 0
    assert [job.status for job in jobs] == [ACTIVE] * 3
    # Run alone, as the worker thread then does, each completes once.
    assert [job.run_claimed() for job in jobs] == [1, 42, 2]
    assert demo.counter == 2


def test_an_unstorable_result_fails_only_its_own_job(queue, deferred_filing):
    _agent, jobs = claim_all(
        queue, [(support.mock_work,), (support.return_lock,), (support.mock_work,)]
    )
    run = run_batch(jobs, transaction.manager)
    transaction.abort()
    assert jobs[0].result == 42 and jobs[2].result == 42
    assert isinstance(jobs[1].result, Failure)
    assert [job.status for job in jobs] == [COMPLETED] * 3
    assert run.again == []


def test_a_worker_with_a_batch_agent_runs_every_job_in_fewer_commits(zasync_db):
    conn = zasync_db.open()
    root = conn.root()
    # One object per job: two threads changing one object would conflict.
    root["demos"] = demos = [PersistentDemo() for _ in range(60)]
    queue = zasync.get_queues(conn)[""]
    jobs = [queue.put(zasync.Job(support.increment, demo)) for demo in demos]
    jobs.append(queue.put(support.raise_value_error))
    transaction.commit()
    spec = AgentSpec(threads=2, prefetch=60, batch=10)
    commits = []
    watcher = commit_watcher(zasync_db)
    watcher.subscribe(lambda tid, oids, local: commits.append(tid))
    with running_dispatcher(zasync_db, agents=[spec]):
        wait_for(lambda: all(j.status == COMPLETED for j in jobs), message="jobs never finished")
    transaction.abort()
    assert [demo.counter for demo in demos] == [1] * 60
    assert [j.result for j in jobs[:-1]] == [1] * 60
    assert jobs[-1].result.check(ValueError)
    # Claims and filing commit too; 61 jobs one by one would take 61 result commits.
    assert len(commits) < 40, len(commits)
    conn.close()


def test_batch_is_checked_like_every_agent_setting():
    with pytest.raises(ValueError, match="batch"):
        AgentSpec(batch=0)
    with pytest.raises(ValueError, match="batch"):
        AgentSpec(batch=1001)
    assert AgentSpec().batch == 1


def test_jobs_wrapping_another_jobs_method_are_not_batched(queue):
    job = queue.put(support.mock_work)
    transaction.commit()
    assert batchable(job)
    assert not batchable(zasync.Job(job.handleInterrupt))


def test_a_job_that_moved_on_before_its_batch_began_is_handed_back_untouched(
    queue, deferred_filing
):
    _agent, jobs = claim_all(queue, [(support.mock_work,), (support.mock_work,)])
    assert jobs[0].run_claimed() == 42  # run meanwhile (another worker, say): COMPLETED
    run = run_batch(jobs, transaction.manager)
    assert run.again == [jobs[0]]
    assert [job for job, _result in run.results] == [jobs[1]]
    transaction.abort()
    assert jobs[1].result == 42 and jobs[1].status == COMPLETED
