"""Jobs and policies that misbehave on purpose, for the adversarial suite.

They live in an importable module (not in a test file) so that real worker
processes can load them too.
"""

from __future__ import annotations

from typing import Any

from zasync import Job, NeverRetry, RetryCommonFourTimes
from zasync.model.failure import Failure


class CustomBaseError(BaseException):
    """Not an Exception: escapes every ``except Exception``."""


def raise_system_exit() -> None:
    raise SystemExit(3)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def raise_generator_exit() -> None:
    raise GeneratorExit


def raise_custom_base() -> None:
    raise CustomBaseError("not an Exception")


def raise_with_bad_str() -> None:
    raise BadStrError()


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class BadRepr:
    """A result whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


def return_bad_repr() -> BadRepr:
    return BadRepr()


def return_huge() -> str:
    return "x" * 5_000_000


def return_unqueued_job() -> Job:
    return Job(sum, [1, 2])


def return_self(job: Any) -> Any:
    return job


def healthy(number: int) -> int:
    return number * 2


def raise_value_error() -> None:
    raise ValueError("the job's own error")


POLICY_CALLS: list[str] = []


class RaisingPolicy(RetryCommonFourTimes):
    """A policy whose every decision raises."""

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> bool:
        POLICY_CALLS.append("jobError")
        raise RuntimeError("policy bug")

    def commitError(self, failure: Failure, data_cache: dict[str, Any]) -> bool:
        POLICY_CALLS.append("commitError")
        raise RuntimeError("policy bug")

    def interrupted(self) -> bool:
        POLICY_CALLS.append("interrupted")
        raise RuntimeError("policy bug")


class ExitingPolicy(NeverRetry):
    """A policy that raises SystemExit when asked."""

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> bool:
        raise SystemExit("policy exits")


def broken_policy_factory(job: Any) -> Any:
    raise RuntimeError("factory bug")


RUNS: dict[str, int] = {}


def count_then_block(name: str, read_annotations: bool = False) -> str:
    """Counts its runs, signals '<name>-started', waits for '<name>'; may read its annotations."""
    from zasync import local

    import support

    RUNS[name] = RUNS.get(name, 0) + 1
    support.event(f"{name}-started").set()
    if not support.event(name).wait(60):
        raise RuntimeError(f"event {name} never set")
    if read_annotations:
        annotations = local.getJob().annotations
        return f"saw {sorted(annotations)} {annotations.get('live')!r}"
    return "done"


def record_result(result: Any) -> str:
    RUNS["callback"] = RUNS.get("callback", 0) + 1
    return f"callback got {result!r}"


def return_lambda(result: Any) -> Any:
    RUNS["return_lambda"] = RUNS.get("return_lambda", 0) + 1
    return lambda: result


async def async_system_exit() -> None:
    raise SystemExit(4)


async def async_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


async def async_healthy(number: int) -> int:
    return number * 2


class AnswerPolicy(NeverRetry):
    """A policy whose every answer is ``ANSWER['value']``."""

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> Any:
        RUNS["answered"] = RUNS.get("answered", 0) + 1
        return ANSWER["value"]

    def interrupted(self) -> Any:
        return ANSWER["value"]


ANSWER: dict[str, Any] = {}


def close_own_connection() -> str:
    import transaction

    from zasync import local

    jar = local.getJob()._p_jar
    transaction.abort()
    jar.close()
    return "closed"


def doom_own_transaction() -> str:
    import transaction

    RUNS["doom"] = RUNS.get("doom", 0) + 1
    transaction.get().doom()
    return "doomed"


def _make_lock() -> Any:
    import threading

    return threading.Lock()


class BecomesALock:
    """Pickles at put, and loads as a thread lock, which cannot be pickled again."""

    def __reduce__(self) -> Any:
        return (_make_lock, ())


def slow_filter(job: Any) -> bool:
    """An agent filter that takes 5 s over jobs of ``slow_filter_target``."""
    import time

    if job.callable is slow_filter_target:
        time.sleep(5)
    return True


def slow_filter_target() -> str:
    return "filtered slowly"
