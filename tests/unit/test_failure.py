"""The Failure record: capture, sanitizing, pickling, check and trap."""

from __future__ import annotations

import pickle
import threading

import pytest

from zasync import Failure, TimeoutError
from zasync.model.failure import UnpicklableException


class CarriesALock(Exception):
    def __init__(self) -> None:
        super().__init__("with lock")
        self.lock = threading.Lock()


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def capture(error):
    try:
        secret_local = {"big": "x" * 1000}  # noqa: F841 - captured as a string
        raise error
    except BaseException:
        return Failure()


def test_captures_frames_as_strings_and_pickles():
    f = capture(KeyError("k"))
    assert f.check(KeyError) is KeyError
    assert f.check(LookupError) is LookupError
    assert f.check(ValueError) is None
    assert f.check("builtins.KeyError") == "builtins.KeyError"
    name, filename, _, local_items, _ = f.stack[-1]
    assert name == "capture" and filename.endswith("test_failure.py")
    values = dict(local_items)
    assert len(values["secret_local"]) < 300  # truncated, not the live object
    copy = pickle.loads(pickle.dumps(f))
    assert copy.check(KeyError) and copy.getTraceback() == f.getTraceback()
    assert f.value.__traceback__ is None  # no live frames kept
    assert str(f) == "builtins.KeyError: 'k'"


def test_trap_reraises_unmatched():
    f = capture(ValueError("bad"))
    assert f.trap(ValueError) is ValueError
    with pytest.raises(ValueError, match="bad"):
        f.trap(KeyError)


def test_unpicklable_exception_values_are_replaced():
    f = capture(CarriesALock())
    pickle.dumps(f)
    assert f.type is CarriesALock
    assert f.type_name.endswith("CarriesALock")


def test_exception_that_cannot_be_rebuilt():
    f = capture(NeedsTwoArgs(1, threading.Lock()))
    pickle.dumps(f)
    assert isinstance(f.value, UnpicklableException | NeedsTwoArgs)


def test_local_exception_class_is_named_not_stored():
    class Local(Exception):
        pass

    f = capture(Local("x"))
    assert f.type is UnpicklableException
    assert "Local" in f.type_name
    assert f.check("Local")
    pickle.dumps(f)


def test_never_raised_exception_has_no_frames():
    f = Failure(TimeoutError())
    assert f.stack == []
    assert f.getTraceback().strip() == (
        "zasync.errors.TimeoutError: The job did not start before ``begin_after + begin_by``."
    )
    assert repr(f) == "<zasync.Failure zasync.errors.TimeoutError>"


def test_failure_outside_except_needs_an_exception():
    with pytest.raises(ValueError, match="needs an exception"):
        Failure()
