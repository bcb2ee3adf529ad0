"""Retries declared in one line (``retry=Retry(...)`` or ``retry=N``), and each attempt's history."""

from __future__ import annotations

import datetime
import pickle

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync import COMPLETED, PENDING, BackoffRetryPolicy, Job, Retry, clock
from zasync.errors import InvalidValueError, UnknownRetryPolicyError
from zasync.model.job import INTERRUPTED
from zasync.schema import ATTEMPTS

import support

SECOND = datetime.timedelta(seconds=1)


class LocalError(Exception):
    pass


def run_next(agent, at):
    """Move the clock to ``at``, claim the next due job and run it, as a worker would."""
    clock.set_now(at)
    job = agent.claimJob()
    assert job is not None, f"no job due at {at}"
    transaction.commit()
    outcome = job()
    transaction.commit()
    return job, outcome


# -- the declaration -------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"attempts": 0}, r"attempts=\.\.\.\) must be from 1 to 1000, not 0"),
        ({"attempts": 1001}, "must be from 1 to 1000"),
        ({"attempts": 2.5}, "whole number"),
        ({"attempts": True}, "whole number"),
        ({"on": ()}, "at least one exception class"),
        ({"on": (int,)}, "exception classes or dotted names, not <class 'int'>"),
        ({"on": 3}, "exception classes or dotted names, not 3"),
        ({"on": ("not a name",)}, "dotted name"),
        (
            {"on": (LocalError, type("Inner", (Exception,), {"__qualname__": "f.<locals>.E"}))},
            "inside a function",
        ),
        ({"backoff": -1}, r"backoff=\.\.\.\) must be from 0"),
        ({"backoff": float("nan")}, "backoff"),
        ({"backoff": "1s"}, "a number of seconds"),
        ({"max_backoff": float("inf")}, "max_backoff"),
        ({"factor": 0.5}, r"factor=\.\.\.\) must be from 1 to 100"),
        ({"jitter": 1.5}, r"jitter=\.\.\.\) must be from 0 to 1"),
    ],
)
def test_a_bad_declaration_is_refused_in_one_line(options, message):
    with pytest.raises(InvalidValueError, match=message) as caught:
        Retry(**options)
    assert "\n" not in str(caught.value)


def test_a_declaration_normalises_and_survives_pickling():
    declared = Retry(attempts=4, on=OSError, backoff=datetime.timedelta(seconds=2), jitter=0)
    assert declared.on == (OSError,)
    assert declared.backoff == 2.0
    assert pickle.loads(pickle.dumps(declared)) == declared


def test_waits_grow_by_the_factor_up_to_the_cap():
    declared = Retry(backoff=1, factor=3, max_backoff=20, jitter=0)
    assert [declared.wait(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    assert Retry(backoff=0).wait(7) == 0
    huge = Retry(backoff=1, factor=100, max_backoff=50, jitter=0)
    assert huge.wait(1000) == 50  # no overflow


def test_jitter_draws_within_its_share_of_the_wait():
    declared = Retry(backoff=10, factor=1, jitter=0.5)
    waits = {declared.wait(1) for _ in range(200)}
    assert all(5 <= wait <= 10 for wait in waits)
    assert len(waits) > 100  # really drawn, not a constant


# -- putting ---------------------------------------------------------------------


def test_retry_as_a_number_is_a_declaration_of_attempts(queue):
    job = queue.put(Job(support.mock_work), retry=4)
    assert job.retry_policy_factory == Retry(attempts=4)
    assert isinstance(job.getRetryPolicy(), BackoffRetryPolicy)
    named = queue.put(Job(support.mock_work), retry="never")
    assert named.retry_policy_factory == "never"


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"retry": 0}, InvalidValueError, "must be from 1 to 1000"),
        ({"retry": True}, InvalidValueError, "retry= takes a Retry"),
        ({"retry": "no-such-policy"}, UnknownRetryPolicyError, "no retry policy registered"),
        ({"retry": object()}, TypeError, "registered name or a callable"),
        ({"retry": 3, "retry_policy_factory": "never"}, InvalidValueError, "not both"),
    ],
)
def test_a_refused_retry_changes_nothing(queue, options, error, message):
    job = Job(support.mock_work)
    with pytest.raises(error, match=message):
        queue.put(job, **options)
    assert len(queue) == 0
    assert job.retry_policy_factory is None and job._p_jar is None


# -- running -----------------------------------------------------------------------


def test_a_failing_job_is_rescheduled_with_backoff_then_fails_for_good(queue, agent, now):
    support.flaky_registry["backoff"] = flaky = support.Flaky(ValueError, 10)
    job = queue.put(Job(support.flaky, "backoff"), retry=Retry(attempts=3, backoff=10, jitter=0))
    transaction.commit()

    _, outcome = run_next(agent, now)
    assert outcome is job and job.status == PENDING
    assert job.begin_after == now + 10 * SECOND  # a due time, not a sleep
    assert len(agent) == 0  # the worker's slot is free at once

    _, outcome = run_next(agent, now + 10 * SECOND)
    assert outcome is job and job.begin_after == now + 30 * SECOND

    _, outcome = run_next(agent, now + 30 * SECOND)
    assert job.status == COMPLETED and outcome.check(ValueError)
    assert flaky.calls == 3
    history = job.failed_attempts
    assert [a.number for a in history] == [1, 2]
    assert [a.end for a in history] == [now, now + 10 * SECOND]
    assert [a.start for a in history] == [now, now + 10 * SECOND]
    assert all(a.error == "builtins.ValueError" for a in history)
    assert job.getRetryPolicy().failed_attempts == 3


def test_a_job_that_succeeds_on_a_later_attempt_keeps_its_history(queue, agent, now):
    support.flaky_registry["later"] = support.Flaky(KeyError, 1)
    job = queue.put(Job(support.flaky, "later"), retry=Retry(on=(KeyError,), jitter=0))
    transaction.commit()
    run_next(agent, now)
    _, outcome = run_next(agent, now + SECOND)
    assert outcome == 42 and job.result == 42 and job.status == COMPLETED
    assert [(a.number, a.error) for a in job.failed_attempts] == [(1, "builtins.KeyError")]


def test_errors_it_does_not_name_fail_at_once(queue, agent, now):
    job = queue.put(Job(support.raise_value_error), retry=Retry(on=("builtins.OSError",)))
    transaction.commit()
    _, outcome = run_next(agent, now)
    assert outcome.check(ValueError) and job.status == COMPLETED
    assert job.failed_attempts == ()
    assert job.get_annotation(ATTEMPTS) is None


def test_attempts_one_never_retries(queue, agent, now):
    job = queue.put(Job(support.raise_value_error), retry=1)
    transaction.commit()
    _, outcome = run_next(agent, now)
    assert outcome.check(ValueError) and job.failed_attempts == ()


def test_conflicts_are_retried_in_place_and_cost_no_attempt(queue, agent, now, sleeps):
    support.flaky_registry["conflict"] = flaky = support.Flaky(ConflictError, 2)
    job = queue.put(Job(support.flaky, "conflict"), retry=Retry(attempts=2))
    transaction.commit()
    _, outcome = run_next(agent, now)
    assert outcome == 42 and flaky.calls == 3
    assert job.failed_attempts == ()
    assert job.getRetryPolicy().failed_attempts == 0


def test_conflicts_the_default_gives_up_on_become_an_attempt(queue, agent, now):
    support.flaky_registry["conflicts"] = flaky = support.Flaky(ConflictError, 5)
    job = queue.put(Job(support.flaky, "conflicts"), retry=Retry(attempts=2, jitter=0))
    transaction.commit()
    _, outcome = run_next(agent, now)
    assert outcome is job and job.status == PENDING and flaky.calls == 5
    assert job.failed_attempts[0].error.startswith("ZODB.POSException.ConflictError")
    _, outcome = run_next(agent, now + SECOND)
    assert outcome == 42


def test_an_interruption_costs_an_attempt_and_waits_the_backoff(queue, agent, now):
    job = queue.put(Job(support.mock_work), retry=Retry(attempts=2, backoff=60, jitter=0))
    transaction.commit()
    assert agent.claimJob() is job
    job._mark_active(now)  # claimed and running when its worker died
    transaction.commit()

    job.handleInterrupt()
    transaction.commit()
    assert job.status == PENDING and job.begin_after == now + 60 * SECOND
    assert [(a.number, a.error) for a in job.failed_attempts] == [(1, INTERRUPTED)]

    clock.set_now(now + 60 * SECOND)
    assert agent.claimJob() is job
    job._mark_active(now + 60 * SECOND)
    transaction.commit()
    job.handleInterrupt()
    transaction.commit()
    assert job.status == COMPLETED and job.result.check(zasync.AbortedError)


def test_a_long_history_keeps_the_newest_attempts(root):
    job = Job(support.mock_work)
    root["job"] = job
    for _ in range(105):
        job._record_failed_attempt("boom\n  on two lines " + "x" * 400)
    history = job.failed_attempts
    assert len(history) == 100 and history[0].number == 6 and history[-1].number == 105
    assert "\n" not in history[0].error and len(history[0].error) == 300


def test_a_task_takes_retry_in_one_line():
    from zasync.model.task import TaskOptions

    assert TaskOptions(retry=5).retry == Retry(attempts=5)
    with pytest.raises(InvalidValueError):
        TaskOptions(retry=-1)


def failure_of(error):
    try:
        raise error
    except BaseException:
        return zasync.Failure()


def test_a_cancellation_is_never_retried():
    policy = Retry()(Job(support.mock_work))
    assert policy.jobError(failure_of(zasync.CancelledError("stop")), {}) is False
    assert policy.jobError(failure_of(ValueError("again")), {}) is not False


def test_a_dotted_name_matches_subclasses_as_the_class_does():
    by_name, by_class = Retry(on=("builtins.OSError",)), Retry(on=(OSError,))
    reset = failure_of(ConnectionResetError())
    assert by_name.retries(reset) and by_class.retries(reset)
    assert not by_name.retries(failure_of(ValueError()))


def test_an_exception_class_of_the_putting_script_is_refused():
    script_error = type("ScriptError", (Exception,), {"__module__": "__main__"})
    with pytest.raises(InvalidValueError, match="workers do not import"):
        Retry(on=(script_error,))


def test_no_backoff_stays_no_wait_however_many_attempts():
    assert Retry(backoff=0, factor=100, jitter=0).wait(1000) == 0
