"""serial() and parallel(), end to end through a running dispatcher."""

from __future__ import annotations

import logging
import operator

import pytest
import transaction

import zasync
from zasync import Failure, Job
from zasync.model.patterns import parallel, serial
from zasync.testing import running_dispatcher, wait_for_result

import support


@pytest.mark.parametrize("threads", [1, 4])
def test_serial_runs_in_order_and_postprocesses(zasync_db, zasync_queue, threads):
    support.order.clear()
    main = zasync_queue.put(
        serial(*(Job(support.record_order, i) for i in range(5)), postprocess=support.add_all)
    )
    transaction.commit()
    with running_dispatcher(zasync_db, threads=threads):
        assert wait_for_result(main) == 10
    assert support.order == [0, 1, 2, 3, 4]


def test_parallel_combines_results(zasync_db, zasync_queue, caplog):
    caplog.set_level(logging.WARNING, "zasync.events")
    main = zasync_queue.put(
        parallel(
            Job(operator.mul, 7, 1),
            Job(operator.mul, 7, 2),
            Job(operator.mul, 7, 3),
            postprocess=support.add_all,
        )
    )
    transaction.commit()
    with running_dispatcher(zasync_db, threads=4):
        assert wait_for_result(main) == 42
    # The postprocess job waits out of every queue by design: no warning says otherwise.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_parallel_many_jobs_finishing_together(zasync_db, zasync_queue):
    main = zasync_queue.put(parallel(*(Job(operator.add, i, 0) for i in range(30))))
    transaction.commit()
    with running_dispatcher(zasync_db, threads=6):
        assert wait_for_result(main) == list(range(30))


def test_default_postprocess_reports_failures(zasync_db, zasync_queue):
    main = zasync_queue.put(parallel(Job(operator.mul, 2, 3), Job(operator.truediv, 1, 0)))
    transaction.commit()
    with running_dispatcher(zasync_db, threads=2):
        six, failure = wait_for_result(main)
    assert six == 6 and isinstance(failure, Failure) and failure.check(ZeroDivisionError)


def test_empty_serial_and_unqueued_use(zasync_db, zasync_queue, zasync_conn):
    main = zasync_queue.put(serial())
    transaction.commit()
    with running_dispatcher(zasync_db):
        assert wait_for_result(main) == []
    loose = serial(Job(operator.mul, 1, 2))
    zasync_conn.root()["loose"] = loose
    transaction.commit()
    result = loose()
    assert isinstance(result, Failure) and result.check(zasync.ZasyncError)
