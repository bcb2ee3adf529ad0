"""Retries declared in one line: ``queue.put(job, retry=Retry(attempts=5, on=(OSError,)))``.

:class:`Retry` is a small frozen value stored on the job as its
``retry_policy_factory``; the first time the job needs its policy it makes a
:class:`BackoffRetryPolicy`, stored with the job, which counts the failed
attempts.  An error of one of the ``on`` types, while attempts remain,
reschedules the job: it goes back to its queue with a new due time (the
backoff) and its worker thread is free at once.  Everything else behaves as
the default policy does (conflicts and disconnects are retried in place,
storage I/O errors at commit wait for the storage), so a declared policy
never gives up on a job because the database hiccuped.

Each attempt that failed is kept in the job's history (see
:mod:`zasync.model.attempts`).  A job whose last attempt failed is a *dead
letter* until someone retries it.

Why not a retry library such as tenacity: those retry by sleeping in the
calling thread and keep their state in memory.  Here the state is the
database and the wait is a due time in the queue, which survive a crash and
leave the worker's threads to other jobs; the backoff itself is one line.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from transaction.interfaces import DoomedTransaction

from zasync.errors import CancelledError, InvalidValueError
from zasync.model.failure import Failure
from zasync.model.retry import (
    STORAGE_IO,
    UNSTORABLE_ERRORS,
    Job,
    RetryCommonFourTimes,
    check_retry_policy_factory,
)

#: Where a declared policy stores its count of failed attempts (``policy.data``).
FAILED_ATTEMPTS = "failed_attempts"
MAX_ATTEMPTS = 1000
MAX_WAIT_SECONDS = 366 * 24 * 3600.0


def _exception_types(on: Any) -> tuple[type[BaseException] | str, ...]:
    """``on`` as a tuple of exception classes or dotted names; InvalidValueError if it is not."""
    items: Iterable[Any] = (on,) if isinstance(on, type | str) else on
    try:
        types = tuple(items)
    except TypeError:
        raise InvalidValueError(
            f"Retry(on=...) takes exception classes or dotted names, not {on!r}"
        ) from None
    if not types:
        raise InvalidValueError("Retry(on=...) needs at least one exception class")
    for kind in types:
        if isinstance(kind, str):
            if not kind or kind.strip() != kind or " " in kind:
                raise InvalidValueError(
                    f"Retry(on=...) names an exception by its dotted name, not {kind!r}"
                )
            continue
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise InvalidValueError(
                f"Retry(on=...) takes exception classes or dotted names, not {kind!r}"
            )
        if kind.__module__ == "__main__":
            raise InvalidValueError(
                f"Retry(on=...): {kind.__qualname__} is defined in the script that puts the "
                "job, which workers do not import; define it in an importable module"
            )
        if "<locals>" in kind.__qualname__:
            raise InvalidValueError(
                f"Retry(on=...): {kind.__qualname__} is defined inside a function, so a "
                "worker could not load it; define it at module level"
            )
    return types


def _number(value: Any, name: str, low: float, high: float, unit: str = "") -> float:
    if unit and isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = f"a number of {unit}" if unit else "a number"
        raise InvalidValueError(f"Retry({name}=...) is {what}, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidValueError(
            f"Retry({name}=...) must be from {low:g} to {high:g}{' ' + unit if unit else ''}, "
            f"not {value!r}"
        )
    return number


@dataclass(frozen=True)
class Retry:
    """A retry policy in one line: how many attempts, on which errors, how long between.

    ``attempts`` counts every run, the first included (``attempts=1`` never
    retries).  A failure whose exception is one of ``on`` (classes, or dotted
    names such as ``'builtins.OSError'``) is retried after
    ``min(max_backoff, backoff * factor ** (n - 1))`` seconds, ``n`` being the
    number of attempts that failed so far; ``jitter`` (0 to 1) draws that wait
    at random from ``[wait * (1 - jitter), wait]``, so that jobs which failed
    together do not all come back together.

    Use it as ``retry=`` of :meth:`Queue.put <zasync.model.queue.Queue.put>`
    or of :func:`zasync.task`; ``retry=5`` is short for ``Retry(attempts=5)``.
    """

    attempts: int = 3
    on: tuple[type[BaseException] | str, ...] = (Exception,)
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        attempts = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise InvalidValueError(f"Retry(attempts=...) is a whole number, not {attempts!r}")
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise InvalidValueError(
                f"Retry(attempts=...) must be from 1 to {MAX_ATTEMPTS}, not {attempts}"
            )
        object.__setattr__(self, "on", _exception_types(self.on))
        for name, low, high, unit in (
            ("backoff", 0.0, MAX_WAIT_SECONDS, "seconds"),
            ("max_backoff", 0.0, MAX_WAIT_SECONDS, "seconds"),
            ("factor", 1.0, 100.0, ""),
            ("jitter", 0.0, 1.0, ""),
        ):
            object.__setattr__(self, name, _number(getattr(self, name), name, low, high, unit))

    def wait(self, failed: int) -> float:
        """Seconds to wait before the next attempt, after ``failed`` failed attempts (1 or more)."""
        if not self.backoff:
            return 0.0
        exponent = max(0, failed - 1)
        try:
            full = self.backoff * self.factor**exponent
        except OverflowError:
            full = math.inf
        full = min(self.max_backoff, full)
        if not self.jitter or not full:
            return full
        draw = random.random()
        return full * (1 - self.jitter * draw)

    def retries(self, failure: Failure) -> bool:
        """True if ``failure`` is of a type this policy retries (a cancellation never is)."""
        return failure.check(CancelledError) is None and failure.check(*self.on) is not None

    def __call__(self, job: Job) -> BackoffRetryPolicy:
        """Make the policy of ``job`` (a Retry is the job's ``retry_policy_factory``)."""
        return BackoffRetryPolicy(job, self)


class BackoffRetryPolicy(RetryCommonFourTimes):
    """The stored policy of a job declared with :class:`Retry`; counts its failed attempts.

    Conflicts and disconnects are the database's, not the job's: they are
    retried in place as by the default policy and do not count as attempts
    until the default policy gives up on them.
    """

    def __init__(self, job: Job, spec: Retry) -> None:
        super().__init__(job)
        self.spec = spec

    @property
    def failed_attempts(self) -> int:
        """How many attempts failed and were retried or gave up (as stored)."""
        return int(self.data.get(FAILED_ATTEMPTS, 0))

    def _next_attempt(self, data_cache: dict[str, Any] | None) -> datetime.timedelta | bool:
        cache = self.data if data_cache is None else data_cache
        failed = int(cache.get(FAILED_ATTEMPTS, self.failed_attempts)) + 1
        cache[FAILED_ATTEMPTS] = failed
        if failed >= self.spec.attempts:
            return False
        return datetime.timedelta(seconds=self.spec.wait(failed))

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> bool | datetime.timedelta:
        """In place for conflicts and disconnects; a later attempt for the ``on`` errors."""
        applied = self._apply(failure, data_cache)
        if applied:
            return True
        if failure.check(DoomedTransaction) or not self.spec.retries(failure):
            return False
        return self._next_attempt(data_cache)

    def commitError(
        self, failure: Failure, data_cache: dict[str, Any]
    ) -> bool | datetime.timedelta:
        """Storage errors as the default policy; a result that cannot be stored never retries."""
        applied = self._apply(failure, data_cache, (STORAGE_IO,))
        if applied:
            return True
        if failure.check(*UNSTORABLE_ERRORS, DoomedTransaction) or not self.spec.retries(failure):
            return False
        return self._next_attempt(data_cache)

    def interrupted(self) -> bool | datetime.timedelta:
        """A worker that stopped mid-run cost an attempt; retry while attempts remain."""
        if "first_active" not in self.data:
            self.data["first_active"] = self.parent.active_start
        self.data["interruptions"] = self.data.get("interruptions", 0) + 1
        return self._next_attempt(None)


def retry_factory(retry: Any) -> Any:
    """What ``retry=`` stands for, as a ``retry_policy_factory``; errors name what is wrong.

    A whole number is :class:`Retry` with that many ``attempts``; a
    :class:`Retry`, a registered policy name or a factory is itself; None is
    None (the default policy).
    """
    if isinstance(retry, bool):
        raise InvalidValueError(
            f"retry= takes a Retry, a number of attempts or a policy, not {retry!r}"
        )
    if isinstance(retry, int):
        return Retry(attempts=retry)
    check_retry_policy_factory(retry)
    return retry
