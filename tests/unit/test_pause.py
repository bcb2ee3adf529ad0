"""Pausing a queue: claims stop in the caller's transaction, pending jobs stay, resume goes on."""

from __future__ import annotations

import operator

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync import InvalidValueError, clock

from support import another_connection


def put_jobs(queue, count):
    return [queue.put(zasync.Job(operator.add, n, 1)) for n in range(count)]


def test_a_paused_queue_gives_no_job_and_keeps_its_pending_ones(conn, queue):
    jobs = put_jobs(queue, 3)
    transaction.commit()
    assert not queue.paused and queue.paused_at is None and queue.pause_reason is None
    before = clock.utcnow()
    assert queue.pause("deploying") is True
    transaction.commit()
    assert queue.paused and queue.pause_reason == "deploying"
    assert before <= queue.paused_at <= clock.utcnow()
    assert queue.claim() is None
    assert queue.claim_batch(10) == []
    assert list(queue) == jobs  # still pending, in order
    queue.put(zasync.Job(operator.add, 9, 1))  # puts still add to it
    transaction.commit()
    assert len(queue) == 4
    assert queue.resume() is True
    transaction.commit()
    assert not queue.paused and queue.paused_at is None and queue.pause_reason is None
    assert queue.claim() is jobs[0]


def test_pausing_joins_the_callers_transaction(conn, queue):
    put_jobs(queue, 1)
    transaction.commit()
    queue.pause()
    transaction.abort()
    assert not queue.paused
    assert queue.claim() is not None


def test_pausing_twice_or_resuming_a_running_queue_changes_nothing(conn, queue):
    assert queue.resume() is False
    assert queue.pause("first") is True
    transaction.commit()
    at = queue.paused_at
    assert queue.pause("second") is False
    assert (queue.paused_at, queue.pause_reason) == (at, "first")
    assert not conn._registered_objects  # nothing to write


@pytest.mark.parametrize(
    "reason",
    [7, b"bytes", "x" * 201, "two\nlines", "bell\a"],
    ids=["int", "bytes", "too long", "two lines", "control character"],
)
def test_a_bad_reason_is_refused_and_changes_nothing(conn, queue, reason):
    with pytest.raises(InvalidValueError, match="a pause reason is a string of at most 200"):
        queue.pause(reason)
    assert not queue.paused
    assert not conn._registered_objects


def test_a_claim_that_began_before_the_pause_committed_conflicts(db, queue):
    """The claim read the queue as running; the pause committed first: the claim must not."""
    put_jobs(queue, 2)
    transaction.commit()
    with another_connection(db) as (claimer, claimer_tm):
        assert zasync.get_queue(claimer).claim() is not None  # not committed yet
        queue.pause()
        transaction.commit()
        with pytest.raises(ConflictError):
            claimer_tm.commit()
        claimer_tm.abort()
        claimer_tm.begin()
        assert zasync.get_queue(claimer).claim() is None  # the retry sees the pause
        assert len(zasync.get_queue(claimer)) == 2


def test_a_claim_that_committed_first_stands_and_the_pause_still_commits(db, queue):
    put_jobs(queue, 2)
    transaction.commit()
    with another_connection(db) as (pauser, pauser_tm):
        assert zasync.get_queue(pauser).pause() is True
        assert queue.claim() is not None
        transaction.commit()  # the claim first
        pauser_tm.commit()  # a pause does not conflict with claims committed before it
    transaction.begin()
    assert queue.paused and len(queue) == 1
