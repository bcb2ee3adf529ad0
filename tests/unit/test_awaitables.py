"""Jobs returning awaitables stay ACTIVE until the result is committed (AC-6 adapted)."""

from __future__ import annotations

import concurrent.futures

import transaction

from zasync import ACTIVE, COMPLETED, Failure, Job

import support

TIMEOUT = 240


def test_ac6_async_job_completes_through_a_fresh_connection(root):
    j = Job(support.async_mock_work)
    j.addCallback(Job(support.multiply, 2))
    root["j"] = j
    transaction.commit()
    pending = j()
    assert isinstance(pending, concurrent.futures.Future)
    assert j.status == ACTIVE and j.result is None
    assert pending.result(timeout=TIMEOUT) == 42
    assert j.status == ACTIVE  # this connection has not synced yet
    transaction.begin()
    assert j.result == 42
    assert j.status == COMPLETED
    assert j.callbacks[0].result == 84


def test_async_failure_becomes_the_result(root):
    root["j"] = j = Job(support.async_raise)
    transaction.commit()
    outcome = j().result(timeout=TIMEOUT)
    assert isinstance(outcome, Failure)
    transaction.begin()
    assert j.status == COMPLETED
    assert j.result.check(RuntimeError)
    assert "async went wrong" in j.result.getTraceback()
