"""Jobs: calling, results, failures, callbacks, statuses (spec section 2, AC-1 to AC-23)."""

from __future__ import annotations

import logging
import operator
import uuid

import pytest
import transaction

from zasync import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    Agent,
    BadStatusError,
    Failure,
    Job,
    TimeoutError,
    ZasyncError,
)
from zasync.interfaces import IJob

import support


def stored(root, job, name="j"):
    root[name] = job
    transaction.commit()
    return job


def test_ac1_call_returns_and_stores_result(root, capsys):
    j = stored(root, Job(support.call))
    assert j.status == NEW
    assert j() == "my result"
    assert capsys.readouterr().out == "hello world\n"
    assert j.result == "my result"
    assert j.status == COMPLETED


def test_ac2_bound_method_of_persistent_object_and_repr(root):
    demo = support.PersistentDemo()
    j = Job(demo.increase)
    assert repr(j) == (
        "<zasync.Job (oid ?, db ?) ``support.PersistentDemo (oid ?, db ?) :increase()``>"
    )
    root["demo"] = demo
    stored(root, j)
    assert j() is None
    assert demo.counter == 1
    r = repr(j)
    assert r.startswith(f"<zasync.Job (oid {int.from_bytes(j._p_oid, 'big')}, db 'unnamed')")
    assert ":increase()``>" in r and "db 'unnamed') :increase" in r


def test_bound_method_is_stored_by_object_and_name(root):
    demo = support.Demo()
    j = Job(demo.increase)
    assert j.callable == demo.increase
    assert j.callable is not demo.increase
    assert Job(support.multiply).callable is support.multiply


def test_ac3_raised_error_becomes_sanitized_failure(root):
    j = stored(root, Job(support.raise_runtime_error))
    result = j()
    assert isinstance(result, Failure)
    assert result is j.result
    assert result.check(RuntimeError) is RuntimeError
    assert result.getTraceback().rstrip().endswith("RuntimeError: Bad Things Happened Here")
    assert result.tb is None
    assert result.stack, "a raised error keeps its frames"
    for _name, _file, _line, local_items, global_items in result.stack:
        for _key, value in (*local_items, *global_items):
            assert isinstance(value, str)
    assert repr(result) == "<zasync.Failure builtins.RuntimeError>"


def test_ac4_raise_rolls_back_but_returned_failure_commits(root, capsys):
    demo = support.PersistentDemo()
    demo.counter = 1
    root["demo"] = demo
    j = stored(root, Job(support.call_and_raise, demo))
    j()
    assert capsys.readouterr().out == "2\n"
    assert demo.counter == 1
    j2 = stored(root, Job(support.return_explicit_failure, demo), "j2")
    res = j2()
    assert capsys.readouterr().out == "2\n"
    assert demo.counter == 2
    assert isinstance(res, Failure) and res.check(RuntimeError)


def test_ac5_returned_job_chains_result(root):
    ij = Job(support.mock_work)
    root["ij"] = ij
    j = stored(root, Job(support.return_job, ij))
    assert j() is ij
    assert j.status == ACTIVE
    assert j.result is None
    assert ij() == 42
    assert j.result == 42
    assert j.status == COMPLETED


def test_ac7_ac8_persistent_arguments_and_call_time_arguments(root):
    demo2, demo3 = support.PersistentDemo(), support.PersistentDemo()
    demo2.value = 1
    root["demo2"], root["demo3"] = demo2, demo3
    j = stored(root, Job(support.arg_call, demo2, value=4))
    assert "arg_call(support.PersistentDemo (oid " in repr(j)
    assert repr(j).endswith("db 'unnamed'), value=4)``>")
    j()
    assert demo2.value == 4
    demo3.value = 10
    j2 = stored(root, Job(support.arg_call, demo2, value=4), "j2")
    j2(demo3, op=operator.mul)
    assert (demo2.value, demo3.value) == (16, 40)
    assert list(j2.args) == [demo2]  # stored arguments unchanged
    assert dict(j2.kwargs) == {"value": 4}


def test_ac9_call_time_argument_and_callback(root):
    j = Job(support.multiply, 2, 3)
    callback = j.addCallbacks(support.describe)
    stored(root, j)
    assert j(4) == 24
    assert callback.result == "the result is 24"


def test_ac10_success_and_failure_callbacks_in_order(root, capsys):
    j = Job(support.multiply, 5, 3)
    j.addCallbacks(support.success, support.failure)
    j.addCallbacks(support.also_success)
    stored(root, j)
    j()
    assert capsys.readouterr().out == "success! 15\nalso a success! 15\n"
    j2 = Job(support.multiply, 5, None)
    j2.addCallbacks(support.success, support.failure)
    stored(root, j2, "j2")
    j2()
    out = capsys.readouterr().out
    assert out.startswith("failure. <zasync.Failure builtins.TypeError>")


def test_ac11_callbacks_chain_results(root, capsys):
    j = Job(support.multiply, 5, 3)
    j.addCallbacks(Job(support.multiply, 4)).addCallbacks(support.success)
    stored(root, j)
    j()
    assert capsys.readouterr().out == "success! 60\n"


def test_ac12_failure_handler_result_feeds_next_callback(root, capsys):
    j = Job(support.raise_runtime_error)
    j.addCallbacks(failure=support.return_zero).addCallbacks(support.success)
    stored(root, j)
    j()
    assert capsys.readouterr().out == "success! 0\n"
    assert isinstance(j.result, Failure)


def test_ac13_callback_on_completed_job_runs_at_once(root):
    j = stored(root, Job(support.multiply, 5, 2))
    j()
    wrapper = j.addCallbacks(Job(support.multiply, 3))
    assert wrapper.result == 30
    assert j.status == COMPLETED
    transaction.commit()


def test_ac14_callback_of_a_callback(root, capsys):
    j = Job(support.multiply, 5, 3)
    j.addCallbacks(support.success)
    j2 = Job(support.multiply, 4)
    j.addCallbacks(j2)
    j2.addCallbacks(support.also_success)
    stored(root, j)
    j()
    assert capsys.readouterr().out == "success! 15\nalso a success! 60\n"


def test_ac15_fail_records_timeout_and_runs_callbacks(root, capsys):
    j = Job(support.multiply, 5, 2)
    j.addCallbacks(failure=support.failure)
    stored(root, j)
    j.fail()
    assert isinstance(j.result, Failure)
    assert j.result.check(TimeoutError)
    assert j.status == COMPLETED
    assert "failure. <zasync.Failure zasync.errors.TimeoutError>" in capsys.readouterr().out
    j2 = stored(root, Job(support.multiply, 5, 2), "j2")
    j2.fail(RuntimeError("failed"))
    assert j2.result.getTraceback().rstrip().endswith("RuntimeError: failed")
    assert j2.result.stack == []  # never raised: no frames


def test_ac16_fail_refuses_active_and_completed(root):
    j = stored(root, Job(support.multiply, 5, 2))
    j._status = ACTIVE.value
    transaction.commit()
    with pytest.raises(BadStatusError, match="can only call fail on a job with NEW, PENDING, or"):
        j.fail()
    j._status = CALLBACKS.value
    transaction.commit()
    j.fail()
    assert j.status == COMPLETED
    assert j.result is None
    with pytest.raises(BadStatusError):
        j.fail()


def test_ac17_resume_callbacks_handles_every_status(root):
    j = Job(support.multiply, 5, 2)
    completed_j = j.addCallback(Job(support.multiply, 3))
    callbacks_j = j.addCallback(Job(support.multiply, 4))
    sub = callbacks_j.addCallback(Job(support.multiply, 2))
    active_j = j.addCallback(Job(support.multiply, 5))
    pending_j = j.addCallback(Job(support.multiply, 6))
    stored(root, j)
    j._status = CALLBACKS.value
    j._result = 10
    completed_j._status = COMPLETED.value
    completed_j._result = 30
    callbacks_j._status = CALLBACKS.value
    callbacks_j._result = 40
    active_j._status = ACTIVE.value
    transaction.commit()
    j.resumeCallbacks()
    assert sub.result == 80
    assert active_j.result == 50  # an interrupted callback is retried
    assert pending_j.result == 60
    assert completed_j.result == 30
    for job in (j, completed_j, callbacks_j, sub, active_j, pending_j):
        assert job.status == COMPLETED


def test_resume_callbacks_requires_callbacks_status(root):
    j = stored(root, Job(support.mock_work))
    with pytest.raises(BadStatusError, match="can only resumeCallbacks"):
        j.resumeCallbacks()


def test_ac18_args_kwargs_and_bind(root, capsys):
    j = Job(support.multiply, 5, 3)
    assert list(j.args) == [5, 3]
    assert dict(j.kwargs) == {}
    j.kwargs["third"] = 2
    stored(root, j)
    assert j() == 30
    b = stored(root, Job.bind(support.show), "b")
    b()
    assert capsys.readouterr().out == repr(b) + "\n"


def test_arguments_are_stored_in_the_job_and_mutations_persist(db, root):
    j = stored(root, Job(support.multiply, 5))
    j.args.append(3)
    j.kwargs["third"] = 2
    assert j._p_changed  # the views mark the job itself changed
    transaction.commit()
    other_tm = transaction.TransactionManager()
    other = db.open(transaction_manager=other_tm)
    try:
        there = other.get(j._p_oid)
        assert list(there.args) == [5, 3] and dict(there.kwargs) == {"third": 2}
        assert there.args == [5, 3] and there.args[-1] == 3 and there.args[:1] == [5]
        del there.args[1]
        there.args.insert(1, 4)
        del there.kwargs["third"]
        other_tm.commit()
    finally:
        other.close()
    transaction.begin()
    assert j.args == [5, 4] and dict(j.kwargs) == {}
    assert j() == 20
    j.args = (1, 2)  # a finished job's arguments can still be replaced
    assert j.args == [1, 2]


def test_ac19_status_through_the_call_and_from_parent(root, queue, capsys):
    j = Job.bind(support.show_status)
    j.addCallback(Job(support.show_status_of, j))
    assert j.status == NEW
    stored(root, j)
    j()
    assert capsys.readouterr().out == "active\ncallbacks\n"
    assert j.status == COMPLETED
    j2 = Job(support.mock_work)
    j2.parent = queue
    assert j2.status == PENDING
    assert j2.queue is queue
    da = queue.dispatchers.register(uuid.uuid4())
    agent = Agent()
    da["main"] = agent
    j2.parent = agent
    assert j2.status == ASSIGNED
    assert j2.agent is agent
    assert j2.queue is queue
    callback = j2.addCallback(support.mock_work)
    assert callback.status == ASSIGNED  # a NEW callback reports its parent's place


def test_ac20_bad_calls(root):
    j = stored(root, Job(support.multiply, 3, 4))
    j.addCallback(Job(support.call_job, j))
    j()
    assert j.result == 12
    callback = j.callbacks[0]
    assert isinstance(callback.result, Failure)
    assert callback.result.check(BadStatusError)
    with pytest.raises(BadStatusError, match="can only call a job with NEW or ASSIGNED status"):
        j()
    selfish = stored(root, Job.bind(support.call_job), "selfish")
    res = selfish()
    assert isinstance(res, Failure) and res.check(BadStatusError)


def test_ac21_callable_can_be_replaced_while_new(root):
    demo = support.PersistentDemo()
    demo.counter = 2
    root["demo"] = demo
    j = Job(support.multiply, 2)
    j.callable = demo.increase
    stored(root, j)
    j()
    assert demo.counter == 4
    with pytest.raises(BadStatusError, match="can only set callable when a job has NEW"):
        j.callable = support.mock_work


def test_ac22_callback_wrappers_and_order(root):
    j = Job(support.multiply, 2, 8)
    wrapper = j.addCallbacks(Job(support.multiply, 5))
    assert len(j.callbacks) == 1
    assert len(wrapper.callbacks) == 1
    cb2 = Job(support.multiply, 9)
    assert j.addCallback(cb2) is cb2
    stored(root, j)
    j()
    assert (j.result, wrapper.result, cb2.result) == (16, 80, 144)
    assert list(j.callbacks) == [wrapper, cb2]


def test_ac23_parents_and_read_only_attributes(root):
    j = Job(support.multiply, 2)
    cb = Job(support.multiply, 2)
    w = j.addCallbacks(cb)
    assert cb.parent is w
    assert w.parent is j
    assert j.__parent__ is j.parent is None
    with pytest.raises(AttributeError):
        j.status = COMPLETED
    with pytest.raises(AttributeError):
        j.result = 4
    with pytest.raises(AttributeError):
        j.active_start = None


def test_callback_defaults(root):
    j = Job(support.mock_work)
    cb = j.addCallback(support.success)
    from zasync.model import retry

    assert cb.failure_log_level == logging.CRITICAL
    assert cb.retry_policy_factory is retry.callback_retry_policy_factory
    cb2 = j.addCallback(support.success, failure_log_level=logging.INFO)
    assert cb2.failure_log_level == logging.INFO


def test_b9_callback_on_completed_job_gets_defaults_before_running(root, caplog):
    j = stored(root, Job(support.mock_work))
    j()
    with caplog.at_level(logging.CRITICAL, "zasync.events"):
        cb = j.addCallback(support.raise_value_error)
    assert cb.failure_log_level == logging.CRITICAL
    assert any(
        r.levelno == logging.CRITICAL and "failed with traceback" in r.message
        for r in caplog.records
    )
    transaction.commit()


def test_active_timestamps_and_logging(root, now, caplog):
    j = stored(root, Job(support.mock_work))
    with caplog.at_level(logging.INFO, "zasync.trace"):
        j()
    assert j.active_start == now and j.active_end == now
    assert any(
        "succeeded with result: 42" in r.message and r.name == "zasync.trace"
        for r in caplog.records
    )
    bad = stored(root, Job(support.raise_value_error), "bad")
    with caplog.at_level(logging.ERROR, "zasync.events"):
        bad()
    errors = [r for r in caplog.records if r.name == "zasync.events" and r.levelno == logging.ERROR]
    assert errors and "failed with traceback" in errors[-1].message
    assert "ValueError: no good" in errors[-1].message


def test_unstored_job_cannot_be_called():
    with pytest.raises(ZasyncError, match="not stored in a database"):
        Job(support.mock_work)()


def test_job_construction_errors():
    with pytest.raises(TypeError, match="needs a callable"):
        Job()
    with pytest.raises(TypeError, match="is not callable"):
        Job(42)


def test_job_provides_ijob():
    from zope.interface.verify import verifyObject

    assert verifyObject(IJob, Job(support.mock_work))


def test_callbacks_another_connection_ran_meanwhile_are_not_run_again(db):
    from zasync import clock

    mine_tm, theirs_tm = transaction.TransactionManager(), transaction.TransactionManager()
    mine, theirs = db.open(transaction_manager=mine_tm), db.open(transaction_manager=theirs_tm)
    j = Job(support.multiply, 5, 2)
    callback = j.addCallback(Job(support.multiply, 3))
    mine.root()["j"] = j
    j._status = CALLBACKS.value
    j._result = 10
    mine_tm.commit()
    assert j.status == CALLBACKS  # as this connection will keep seeing it until it retries
    theirs_tm.begin()
    other = theirs.root()["j"]
    other.resumeCallbacks()  # a dispatcher cleaning up, say, runs them first
    theirs_tm.commit()
    their_run = other.callbacks[0]._p_serial

    def no_backoff(seconds):
        raise AssertionError("retried with a backoff: the unit kept failing")

    clock.set_sleep(no_backoff)
    j._run_callbacks(mine_tm)  # meets a conflict, then sees the callbacks done
    assert j.status == COMPLETED and callback.result == 30
    assert callback._p_serial == their_run  # run once, by the other connection


def test_an_interrupted_job_another_connection_aborted_meanwhile_is_left_alone(db):
    from zasync import clock

    mine_tm, theirs_tm = transaction.TransactionManager(), transaction.TransactionManager()
    mine, theirs = db.open(transaction_manager=mine_tm), db.open(transaction_manager=theirs_tm)
    mine.root()["j"] = j = Job(support.multiply, 5, 2)
    j._status = ACTIVE.value
    mine_tm.commit()
    assert j.status == ACTIVE
    theirs_tm.begin()
    other = theirs.root()["j"]
    other._abort_interrupted(theirs_tm)  # a sibling dispatcher cleaning up
    their_abort = other._p_serial

    def no_backoff(seconds):
        raise AssertionError("retried with a backoff: the unit kept failing")

    clock.set_sleep(no_backoff)
    j._abort_interrupted(mine_tm)  # stale: meets a conflict, then sees it aborted
    assert j.status == COMPLETED and j._p_serial == their_abort  # not written again
