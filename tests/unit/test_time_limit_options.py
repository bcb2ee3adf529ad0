"""``timeout=``: which limit applies to a job, and bad limits refused with nothing changed."""

from __future__ import annotations

import datetime

import pytest
import transaction

import zasync
from zasync import InvalidValueError, Job
from zasync.model.timelimit import MAX_TIME_LIMIT, check_timeout, limit_for
from zasync.runtime.config import AgentSpec
from zasync.testing import run_until_idle

import support


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), (0.25, 0.25), (datetime.timedelta(minutes=2), 120.0), (None, None)],
)
def test_a_limit_is_seconds_or_a_timedelta(value, seconds):
    assert check_timeout(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "timeout must be more than 0 seconds"),
        (-5, "timeout must be more than 0 seconds"),
        (datetime.timedelta(seconds=-1), "timeout must be more than 0 seconds"),
        (float("nan"), "timeout must be a number of seconds, not NaN"),
        (float("inf"), "timeout must be at most"),
        (MAX_TIME_LIMIT + 1, "timeout must be at most"),
        (True, "timeout must be a number of seconds or a datetime.timedelta, not bool"),
        ("30", "timeout must be a number of seconds or a datetime.timedelta, not str"),
    ],
)
def test_a_bad_limit_is_refused_in_one_line_and_the_put_changes_nothing(
    conn, queue, value, message
):
    transaction.commit()
    job = Job(support.multiply, 2, 3)
    with pytest.raises(InvalidValueError, match=message) as refused:
        queue.put(job, timeout=value)
    assert "\n" not in str(refused.value)
    assert len(queue) == 0 and job._p_jar is None and job.timeout is None


def test_a_job_keeps_its_own_limit(db, conn, queue):
    job = queue.put(Job(support.multiply, 2, 3), timeout=datetime.timedelta(seconds=90))
    plain = queue.put(Job(support.multiply, 2, 4))
    transaction.commit()
    assert job.timeout == 90.0 and plain.timeout is None
    assert run_until_idle(db) == [6, 8]  # a limit does not change how a job runs in time


def test_the_queue_default_is_checked_and_can_be_removed(conn, queue):
    assert queue.default_timeout is None
    queue.default_timeout = datetime.timedelta(minutes=10)
    transaction.commit()
    assert queue.default_timeout == 600.0
    with pytest.raises(InvalidValueError, match="a queue's default_timeout must be more than 0"):
        queue.default_timeout = -1
    assert queue.default_timeout == 600.0
    queue.default_timeout = None
    transaction.commit()
    assert queue.default_timeout is None


def test_the_job_comes_first_then_the_agent_then_the_queue(conn, queue):
    queue.default_timeout = 600
    own = queue.put(Job(support.multiply, 1, 1), timeout=5)
    plain = queue.put(Job(support.multiply, 1, 2))
    assert limit_for(own, agent_default=60) == 5
    assert limit_for(plain, agent_default=60) == 60
    assert limit_for(plain, agent_default=None) == 600
    queue.default_timeout = None
    assert limit_for(plain, agent_default=None) is None


def test_jobs_wrapping_another_jobs_method_take_no_default(conn, queue):
    queue.default_timeout = 1
    crashed = queue.put(Job(support.multiply, 1, 1))
    wrapper = queue.put(Job(crashed.handleInterrupt))
    assert limit_for(wrapper, agent_default=2) is None


def test_an_agent_limit_is_checked_like_the_others():
    assert AgentSpec(timeout=2.5).timeout == 2.5
    for bad in (0, -1, float("nan"), 10**9):
        with pytest.raises(ValueError, match="timeout"):
            AgentSpec(timeout=bad)


def test_time_limit_error_is_exported_and_distinct_from_start_deadlines():
    assert issubclass(zasync.TimeLimitError, zasync.ZasyncError)
    assert not issubclass(zasync.TimeLimitError, zasync.TimeoutError)


def test_an_integer_too_large_for_a_float_is_refused_in_one_line():
    with pytest.raises(InvalidValueError, match="timeout must be at most"):
        check_timeout(10**400)
