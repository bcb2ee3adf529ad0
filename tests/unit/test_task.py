"""``@zasync.task``: a function with job options and a ``put`` that joins the transaction."""

from __future__ import annotations

import datetime
import pickle

import pytest
import transaction

import task_examples
import zasync
from task_examples import double, report
from zasync import InvalidValueError, UnknownRetryPolicyError
from zasync.testing import run_until_idle


@pytest.fixture
def reports(conn):
    queues = zasync.install_queues(conn, "reports")
    queues["reports"].quotas.create("one", size=1)
    transaction.commit()
    return queues


def test_a_task_is_still_the_function():
    assert double(21) == 42
    assert report("sales", pages=3) == "sales (3 pages)"
    assert double.__name__ == "double" and double.__doc__ == "Twice the value."
    assert repr(double) == "<zasync.Task task_examples.double>"
    assert double.options == zasync.model.task.TaskOptions()


def test_a_task_pickles_by_name_like_the_function_it_replaces():
    assert pickle.loads(pickle.dumps(double)) is double
    assert b"task_examples" in pickle.dumps(double) and b"Task" not in pickle.dumps(double)


def test_put_joins_the_transaction_with_the_tasks_options(db, conn, reports):
    job = report.put(conn, "sales", pages=2)
    assert job.parent is reports["reports"]  # the task's queue, found through the connection
    assert job.callable is report and job.args == ["sales"] and job.kwargs == {"pages": 2}
    assert job.retry_policy_factory == "never"
    assert job.quota_names == ("one",)
    assert job.begin_by == datetime.timedelta(minutes=5)
    assert job.failure_log_level == 30
    assert job.timeout == 120.0
    transaction.abort()
    assert len(reports["reports"]) == 0  # no commit, no job
    job = report.put(conn, "sales", pages=2)
    transaction.commit()
    assert run_until_idle(db, "reports") == ["sales (2 pages)"]
    assert job.result == "sales (2 pages)"


def test_put_into_a_queue_and_with_options_for_one_put(db, conn, reports):
    direct = double.put(reports[""], 4)
    elsewhere = double.with_options(queue="reports").put(conn, 5)
    transaction.commit()
    assert direct.parent is reports[""] and elsewhere.parent is reports["reports"]
    assert double.options.queue == ""  # the task itself is unchanged
    assert elsewhere.callable is double  # a job stores the task its module holds
    assert run_until_idle(db, "") == [8]
    assert run_until_idle(db, "reports") == [10]


def test_job_makes_a_job_for_callbacks_and_patterns(db, conn, reports):
    first = double.put(conn, 1)
    first.addCallback(double.job())
    transaction.commit()
    run_until_idle(db, "")
    assert first.callbacks[0].result == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": 3}, "a task's queue is a queue name"),
        ({"quota_names": "one"}, "a task's quota_names are quota names"),
        ({"quota_names": [1]}, "a task's quota_names are quota names"),
        ({"begin_by": datetime.timedelta(seconds=-1)}, "a task's begin_by is a timedelta"),
        ({"begin_by": 5}, "a task's begin_by is a timedelta"),
        ({"failure_log_level": "WARNING"}, "a task's failure_log_level is a logging level"),
        ({"timeout": 0}, "a task's timeout must be more than 0 seconds"),
        ({"timeout": "1m"}, "a task's timeout must be a number of seconds"),
        ({"timeout": float("inf")}, "a task's timeout must be at most"),
    ],
)
def test_bad_options_are_refused_when_the_module_is_imported(options, message):
    with pytest.raises(InvalidValueError, match=message):
        zasync.task(**options)
    with pytest.raises(InvalidValueError, match=message):
        double.with_options(**options)


def test_unknown_retry_policies_and_options_are_refused():
    with pytest.raises(UnknownRetryPolicyError):
        zasync.task(retry="sometimes")
    with pytest.raises(TypeError):
        zasync.task(deadline=3)  # not an option
    with pytest.raises(TypeError):
        double.with_options(deadline=3)


def test_only_module_level_functions_can_be_tasks():
    def inner() -> None: ...

    with pytest.raises(InvalidValueError, match="needs a module-level function"):
        zasync.task(inner)
    with pytest.raises(InvalidValueError, match="needs a module-level function"):
        zasync.task(lambda: None)


def test_put_needs_a_queue_or_a_connection(conn, reports):
    with pytest.raises(InvalidValueError, match=r"double\.put needs a queue or a ZODB connection"):
        double.put("reports", 1)
    with pytest.raises(LookupError, match="no queue named 'nowhere'"):
        double.with_options(queue="nowhere").put(conn, 1)
    assert len(reports[""]) == 0


def test_the_module_holds_the_task():
    assert task_examples.double is double and isinstance(double, zasync.Task)
