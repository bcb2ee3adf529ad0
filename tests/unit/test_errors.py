"""The error tree: one root, docstrings as default messages, the job or queue carried."""

from __future__ import annotations

import datetime
import inspect
import pickle
from typing import Any

import pytest

import zasync
import zasync.errors
import zasync.interfaces
from zasync import Job

import support


def error_classes() -> list[type[zasync.ZasyncError]]:
    return [
        cls
        for _, cls in inspect.getmembers(zasync.errors, inspect.isclass)
        if issubclass(cls, zasync.ZasyncError)
    ]


def test_every_error_is_exported_and_documented() -> None:
    for cls in error_classes():
        assert getattr(zasync, cls.__name__) is cls, cls
        assert cls.__name__ in zasync.__all__ and cls.__name__ in zasync.errors.__all__
        assert cls.__doc__ and str(cls()), cls


def test_old_homes_in_interfaces_are_the_same_classes() -> None:
    for name in ("CancelledError", "TimeoutError", "AbortedError", "BadStatusError"):
        assert getattr(zasync.interfaces, name) is getattr(zasync.errors, name)


def test_the_docstring_is_the_default_message() -> None:
    assert str(zasync.QuotaFullError()) == (
        "The quota already holds as many jobs as its size: wait for one to finish, or resize it."
    )
    assert str(zasync.QuotaFullError("mine")) == "mine"


@pytest.mark.parametrize(
    "cls",
    [
        zasync.ConfigurationError,
        zasync.AlreadyActivatedError,
        zasync.NotActivatedError,
        zasync.QuotaFullError,
        zasync.UnknownQuotaError,
        zasync.NotNewError,
        zasync.NaiveDatetimeError,
    ],
)
def test_argument_errors_are_still_value_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, ValueError) and issubclass(cls, zasync.ZasyncError)


def test_a_copy_keeps_the_message_not_the_job() -> None:
    job = Job(support.mock_work)
    error = zasync.UnknownQuotaError("unknown quota name 'x'", name="x", job=job)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.args == error.args and copy.name == "x" and copy.job is None


class Detailed(zasync.ZasyncError):
    """A user's error with details of its own."""


def test_a_copy_keeps_a_subclass_s_own_attributes() -> None:
    error = Detailed("boom", queue=object())
    error.detail = 7
    copy = pickle.loads(pickle.dumps(error))
    assert copy.detail == 7 and copy.queue is None and str(copy) == "boom"


def test_errors_carry_the_job_and_queue(queue: Any) -> None:
    job = queue.put(support.mock_work)
    with pytest.raises(zasync.NotNewError) as info:
        queue.put(job)
    assert info.value.job is job and info.value.queue is queue
    with pytest.raises(zasync.QuotaFullError) as full:
        queue.quotas.create("one", size=0)
        other = Job(support.mock_work)
        other.quota_names = ("one",)
        queue.quotas["one"].add(other)
    assert full.value.job is other


def test_naive_datetimes_raise_a_clear_error(queue: Any) -> None:
    with pytest.raises(zasync.NaiveDatetimeError, match="give the datetime a time zone"):
        queue.put(support.mock_work, begin_after=datetime.datetime(2030, 1, 1))


def test_a_job_argument_given_to_put_as_its_start_time_is_refused_in_one_line(queue):
    before = len(queue)
    with pytest.raises(zasync.InvalidValueError, match="a start time must be") as caught:
        queue.put(support.increment, object())
    assert "\n" not in str(caught.value)
    assert "Job(callable, *args)" in str(caught.value)
    assert len(queue) == before
