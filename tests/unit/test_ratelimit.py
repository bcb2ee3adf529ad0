"""Rate limits: at most N starts in any window of the period, exactly, across claimers."""

from __future__ import annotations

import datetime
import operator

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync import Job, clock
from zasync.errors import ConfigurationError, InvalidValueError
from zasync.model.ratelimit import RateLimit

from support import another_connection

UTC = datetime.UTC
MS = datetime.timedelta(milliseconds=1)
START = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_no_window_of_the_period_holds_more_than_count():
    limit = RateLimit("mail", 3, 1.0)
    taken = []
    for step in range(400):  # every 10 ms for 4 s, as many as it admits
        now = START + step * 10 * MS
        if limit.admits(now):
            taken.append(limit.take(now))
    assert len(taken) == 12  # 3 per second
    for first in taken:
        window = [t for t in taken if first <= t < first + datetime.timedelta(seconds=1)]
        assert len(window) <= 3
    assert not limit.admits(taken[-1])
    assert limit.next_free(taken[-1]) == taken[-3] + datetime.timedelta(seconds=1)


def test_a_start_is_never_recorded_before_the_latest():
    limit = RateLimit("x", 5, 1.0)
    assert limit.take(START + 5 * MS) == START + 5 * MS
    assert limit.take(START) == START + 5 * MS  # a claimer whose clock lags


@pytest.mark.parametrize(
    "count, per, message",
    [(0, 1, "from 1 to"), (True, 1, "whole number"), (5, 0, "from 0.001"), (5, "1s", "seconds")],
)
def test_bad_limits_are_refused(queue, count, per, message):
    with pytest.raises(InvalidValueError, match=message):
        queue.rate_limits.set("bad", count, per)
    assert "bad" not in queue.rate_limits
    with pytest.raises(ConfigurationError, match="rate limit's name"):
        queue.rate_limits.set("", 1, 1)


def test_claims_pass_over_jobs_whose_limit_is_full_and_keep_their_place(queue):
    clock.set_now(START)
    queue.rate_limits.set("api", 2, per=1)
    limited = [queue.put(Job(operator.add, n, 0), rate_limits=["api"]) for n in range(3)]
    free = queue.put(Job(operator.add, 9, 0))
    transaction.commit()
    assert [queue.claim() for _ in range(3)] == [limited[0], limited[1], free]
    assert queue.claim() is None and list(queue) == [limited[2]]
    clock.set_now(START + datetime.timedelta(seconds=1))
    assert queue.claim() is limited[2]
    assert limited[2]._v_started == START + datetime.timedelta(seconds=1)


def test_a_job_counts_against_all_its_limits(queue):
    clock.set_now(START)
    queue.rate_limits.set("a", 5, per=1)
    queue.rate_limits.set("b", 1, per=60)
    first = queue.put(Job(operator.add, 1, 0), rate_limits=["a", "b"])
    queue.put(Job(operator.add, 2, 0), rate_limits=["a", "b"])
    transaction.commit()
    assert queue.claim() is first and queue.claim() is None
    assert queue.rate_limits["a"].used(START) == 1


def test_unknown_limits_are_refused_and_change_nothing(queue):
    job = Job(operator.add, 1, 1)
    with pytest.raises(InvalidValueError, match="unknown rate limit 'nope'"):
        queue.put(job, rate_limits=["nope"])
    with pytest.raises(InvalidValueError, match="a list of names"):
        queue.put(job, rate_limits="nope")
    assert len(queue) == 0 and job._p_jar is None


def test_two_claimers_taking_one_limit_conflict_so_neither_overshoots(db, queue):
    clock.set_now(START)
    queue.rate_limits.set("one", 1, per=60)
    queue.put(Job(operator.add, 1, 0), rate_limits=["one"])
    queue.put(Job(operator.add, 2, 0), rate_limits=["one"])
    transaction.commit()
    with another_connection(db) as (other, other_tm):
        assert zasync.get_queue(other).claim_batch(1, lane=4)
        assert queue.claim_batch(1, lane=0)
        other_tm.commit()
        with pytest.raises(ConflictError):
            transaction.commit()
    transaction.abort()
    assert queue.claim() is None  # the retry sees the limit full


def test_a_task_counts_against_its_rate_limits(queue):
    from task_examples import double

    queue.rate_limits.set("t", 1, per=1)
    assert double.with_options(rate_limits=["t"]).put(queue, 2).rate_limit_names == ("t",)


def test_a_job_of_several_limits_records_one_start_in_all_of_them(queue):
    clock.set_now(START)
    queue.rate_limits.set("a", 100, per=1)
    queue.rate_limits.set("b", 1, per=10)
    queue.rate_limits["a"].take(START + 5 * 1000 * MS)  # a claimer whose clock ran ahead
    both = queue.put(Job(operator.add, 1, 0), rate_limits=["a", "b"])
    only_b = queue.put(Job(operator.add, 2, 0), rate_limits=["b"])
    transaction.commit()
    assert queue.claim() is both and both._v_started == START + 5 * 1000 * MS
    assert queue.rate_limits["b"].latest() == START + 5 * 1000 * MS
    clock.set_now(START + 10 * 1000 * MS)
    assert queue.claim() is None  # b's window runs to 15 s, not 10 s
    clock.set_now(START + 15 * 1000 * MS)
    assert queue.claim() is only_b
