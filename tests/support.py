"""Importable functions and classes used as job callables in the tests.

Jobs are pickled, so their callables must be importable by name.
"""

from __future__ import annotations

import operator
from typing import Any

import persistent
from ZODB.POSException import ConflictError

from zasync.failure import Failure

calls: list[Any] = []


def call() -> str:
    print("hello world")
    return "my result"


def multiply(first: Any, second: Any, third: Any = None) -> Any:
    result = first * second
    if third is not None:
        result *= third
    return result


def mock_work() -> int:
    return 42


def raise_runtime_error() -> None:
    raise RuntimeError("Bad Things Happened Here")


def raise_value_error() -> None:
    raise ValueError("no good")


def show(*args: Any) -> None:
    print(*args)


def show_status(job: Any, *args: Any) -> Any:
    print(job.status)
    return job.status


def show_status_of(job: Any, *args: Any) -> None:
    print(job.status)


def success(res: Any) -> None:
    print(f"success! {res!r}")


def also_success(res: Any) -> None:
    print(f"also a success! {res!r}")


def failure(res: Any) -> None:
    print(f"failure. {res!r}")


def return_zero(res: Any) -> int:
    return 0


def describe(res: Any) -> str:
    return f"the result is {res!r}"


def call_job(job: Any, *args: Any) -> Any:
    return job()


def arg_call(ob: Any, ob2: Any = None, value: Any = None, op: Any = None) -> None:
    if op is None:
        op = operator.mul
    ob.value = op(ob.value, value)
    if ob2 is not None:
        ob2.value = op(ob2.value, value)


def return_job(job: Any) -> Any:
    return job


class Demo:
    """A plain object with a method, used as a bound-method callable."""

    counter = 0

    def increase(self, value: int = 1) -> None:
        self.counter += value


class PersistentDemo(persistent.Persistent):
    """A persistent object whose changes a job makes and a test checks."""

    counter = 0
    value = 0

    def increase(self, value: int = 1) -> None:
        self.counter += value


def call_and_raise(demo: PersistentDemo) -> None:
    demo.counter += 1
    print(demo.counter)
    raise RuntimeError("Bad Things Happened Here")


def return_explicit_failure(demo: PersistentDemo) -> Failure:
    demo.counter += 1
    print(demo.counter)
    return Failure(RuntimeError("explicit"))


class Flaky:
    """Raises ``error`` the first ``times`` calls, then returns 42; counts calls."""

    def __init__(self, error: type[BaseException], times: int) -> None:
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()
        return 42


flaky_registry: dict[str, Flaky] = {}


def flaky(name: str) -> int:
    return flaky_registry[name]()


def always_conflict() -> None:
    calls.append("always_conflict")
    raise ConflictError()


async def async_mock_work(value: int = 42) -> int:
    return value


async def async_raise() -> None:
    raise RuntimeError("async went wrong")


def imaginary_network_call() -> str:
    return "200 OK"


def scribble(res: Any) -> str:
    return f"{res}: SCRIBBLED"


def handle_name_error(f: Failure) -> str:
    f.trap(NameError)
    return "I handled a name error"


def raise_name_error() -> None:
    raise NameError("undefined_name")


def only_or(job: Any) -> bool:
    return job.callable is operator.or_


def increment(counter: PersistentDemo) -> int:
    counter.counter += 1
    return counter.counter
