"""Retry policies: what a job does when it raises, fails to commit or is interrupted.

A policy is a persistent object created for one job on first need
(:meth:`zasync.model.job.Job.getRetryPolicy`) and stored with it, so its counters
survive crashes.  Three policies come with zasync:

* :class:`RetryCommonFourTimes`, the default for queued jobs: conflicts are
  tried five times in all, storage disconnects forever with a backoff, other
  errors not at all; up to 9 interruptions are retried.
* :class:`RetryCommonForever`, the default for callbacks: conflicts and
  interruptions forever, and commit errors always.
* :class:`NeverRetry`, for work with effects outside the database.

The process-wide defaults can be changed with :func:`set_default_retry_policy`
and :func:`set_callback_retry_policy`, and policies can be registered by name
(:func:`register_retry_policy`) for ``retry_policy_factory='name'``.
"""

from __future__ import annotations

import datetime
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from BTrees.OOBTree import OOBTree
from transaction.interfaces import DoomedTransaction
from ZODB.POSException import StorageError
from zope.interface import implementer

from zasync import _counters, clock
from zasync.interfaces import IRetryPolicy, UnknownRetryPolicyError
from zasync.model._base import Base
from zasync.model.failure import Failure
from zasync.model.tx import TRANSACTION_ERRORS, disconnect_errors


class Job(Protocol):
    """What a retry policy and its factories read of the job they serve."""

    retry_policy_factory: Any
    _retry_policy: Any


trace_log = logging.getLogger("zasync.trace")

#: What a policy answers: retry or not, or when to run again.
RetryDecision = bool | datetime.datetime | datetime.timedelta
RetryPolicyFactory = Callable[[Job], Any]


@dataclass(frozen=True)
class Rule:
    """How one family of errors is retried.

    ``max_count`` None means without limit; the n-th retry sleeps
    ``min(max_backoff, initial_backoff + (n - 1) * backoff_increment)`` seconds.
    """

    key: str
    errors: Callable[[], tuple[type[BaseException], ...]]
    max_count: int | None
    initial_backoff: float = 0
    backoff_increment: float = 0
    max_backoff: float = 0

    def backoff(self, count: int) -> float:
        """Seconds to sleep before retry number ``count``."""
        return min(self.max_backoff, self.initial_backoff + (count - 1) * self.backoff_increment)


def _transaction_errors() -> tuple[type[BaseException], ...]:
    return TRANSACTION_ERRORS


#: What pickling a value that cannot be stored raises: the same every time.
UNSTORABLE_ERRORS: tuple[type[BaseException], ...] = (pickle.PicklingError, TypeError)


def _storage_io_errors() -> tuple[type[BaseException], ...]:
    # StorageError: the storage server failed the vote (a ZEO server stopped
    # in the middle of one answers ServerException), RelStorage's commit lock
    # timed out, the storage is read-only for now.  None of them is the job's.
    return (StorageError, OSError)


#: Commit errors of the storage (a full disk, EIO, a server failing the vote):
#: retried with a backoff while they last.
STORAGE_IO = Rule("storage_io", _storage_io_errors, None, 5, 5, 60)
DISCONNECTED = Rule("disconnected", disconnect_errors, None, 5, 5, 60)
TRANSACTION_ERROR_FIVE_TIMES = Rule("transaction_error", _transaction_errors, 5)
TRANSACTION_ERROR_FOREVER = Rule("transaction_error", _transaction_errors, None)


@implementer(IRetryPolicy)
class RetryCommonFourTimes(Base):
    """Retry conflicts (five tries in all), disconnects (forever), interruptions (9 times)."""

    rules: tuple[Rule, ...] = (DISCONNECTED, TRANSACTION_ERROR_FIVE_TIMES)
    max_interruptions: int | None = 9
    log_every = 5

    def __init__(self, job: Job) -> None:
        self.parent = job
        self.data = OOBTree()

    def _apply(
        self, failure: Failure, data_cache: dict[str, Any], extra: tuple[Rule, ...] = ()
    ) -> bool | None:
        """Apply the first matching rule (``extra`` ones last); None if no rule matches.

        A transaction the job doomed itself is its own choice, not a conflict.
        """
        if failure.check(DoomedTransaction):
            return None
        for rule in (*self.rules, *extra):
            if not failure.check(*rule.errors()):
                continue
            count = data_cache.get(rule.key, 0) + 1
            if rule.max_count is not None and count >= rule.max_count:
                trace_log.info("%r: %s %d times; not retrying", self.parent, rule.key, count)
                return False
            _counters.add("job_retries", rule.key)
            clock.sleep(rule.backoff(count))
            data_cache[rule.key] = count
            data_cache["last_" + rule.key] = failure
            if "first_active" not in data_cache:
                data_cache["first_active"] = self.parent.active_start
            if count == 1 or count % self.log_every == 0:
                trace_log.info(
                    "%r requests another attempt after %s (attempt %d)",
                    self.parent,
                    rule.key,
                    count,
                )
            return True
        return None

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> RetryDecision:
        """Retry conflicts and disconnects as the rules say; never other errors."""
        return bool(self._apply(failure, data_cache))

    def commitError(self, failure: Failure, data_cache: dict[str, Any]) -> RetryDecision:
        """The rules of :meth:`jobError` (sharing its counts), and storage errors.

        An ``OSError`` at commit (a full disk, an I/O error) or a
        ``StorageError`` (a server failing the vote, a commit-lock timeout) is
        the storage's, not the job's: it is retried with a backoff for as
        long as it lasts.
        """
        return bool(self._apply(failure, data_cache, (STORAGE_IO,)))

    def interrupted(self) -> RetryDecision:
        """Count the interruption; retry while there have been at most ``max_interruptions``."""
        if "first_active" not in self.data:
            self.data["first_active"] = self.parent.active_start
        count = self.data.get("interruptions", 0) + 1
        self.data["interruptions"] = count
        return self.max_interruptions is None or count <= self.max_interruptions

    def updateData(self, data_cache: dict[str, Any]) -> None:
        """Store the counters of this call; keep the first ``first_active`` ever seen."""
        for key, value in data_cache.items():
            if key == "first_active" and key in self.data:
                continue
            self.data[key] = value


class RetryCommonForever(RetryCommonFourTimes):
    """Retry conflicts, disconnects, interruptions and commit errors without limit."""

    rules = (DISCONNECTED, TRANSACTION_ERROR_FOREVER)
    max_interruptions = None

    #: Commit errors other than conflicts and disconnects retried at most this often.
    max_other_commit_errors = 5

    def commitError(self, failure: Failure, data_cache: dict[str, Any]) -> RetryDecision:
        """Retry conflicts and disconnects for ever, other commit errors a few times.

        A result that cannot be pickled, or a transaction the job doomed,
        fails the same way however often it is tried: never retried.
        """
        applied = self._apply(failure, data_cache, (STORAGE_IO,))
        if applied is not None:
            return applied
        if failure.check(*UNSTORABLE_ERRORS, DoomedTransaction):
            return False
        count = data_cache.get("other", 0) + 1
        data_cache["other"] = count
        data_cache["last_other"] = failure
        trace_log.info("%r retries commit error %s (%d)", self.parent, failure, count)
        return bool(count < self.max_other_commit_errors)


@implementer(IRetryPolicy)
class NeverRetry(Base):
    """Never retry: for work with effects outside the database, which must not repeat.

    Jobs with this policy commit their start before they run (``start_commit``),
    so a job claimed by a worker that dies before starting it is run later
    rather than aborted.
    """

    start_commit = True

    def __init__(self, job: Job) -> None:
        self.parent = job

    def jobError(self, failure: Failure, data_cache: dict[str, Any]) -> RetryDecision:
        """Do not retry."""
        return False

    def commitError(self, failure: Failure, data_cache: dict[str, Any]) -> RetryDecision:
        """Do not retry."""
        return False

    def interrupted(self) -> RetryDecision:
        """Do not retry."""
        return False

    def updateData(self, data_cache: dict[str, Any]) -> None:
        """Nothing is stored."""


# -- process-wide defaults ----------------------------------------------------

_defaults: dict[str, RetryPolicyFactory] = {}
_named: dict[str, RetryPolicyFactory] = {}


def set_default_retry_policy(factory: RetryPolicyFactory | None) -> None:
    """Set the policy factory of jobs without their own (None restores RetryCommonFourTimes)."""
    _set_default("job", factory)


def set_callback_retry_policy(factory: RetryPolicyFactory | None) -> None:
    """Set the policy factory of callbacks without their own (None: RetryCommonForever)."""
    _set_default("callback", factory)


def _set_default(kind: str, factory: RetryPolicyFactory | None) -> None:
    if factory is None:
        _defaults.pop(kind, None)
    elif not callable(factory):
        raise TypeError("a retry policy factory must be callable")
    else:
        _defaults[kind] = factory


def default_retry_policy_factory(job: Job) -> Any:
    """Make the process-wide default policy for a queued job."""
    return _defaults.get("job", RetryCommonFourTimes)(job)


def callback_retry_policy_factory(job: Job) -> Any:
    """Make the process-wide default policy for a callback."""
    return _defaults.get("callback", RetryCommonForever)(job)


def needs_start_commit(job: Job) -> bool:
    """True if ``job``'s policy wants its start committed before it runs.

    Other jobs are marked ACTIVE in the dispatcher's claim transaction, and an
    interruption before they start counts as an interruption, which their
    policy retries.
    """
    factory = job.retry_policy_factory
    if job._retry_policy is not None:
        factory = type(job._retry_policy)
    elif factory is None:
        factory = _defaults.get("job", RetryCommonFourTimes)
    elif isinstance(factory, str):
        factory = _named.get(factory)
        if factory is None:
            return True  # unknown here: take the careful path
    return bool(getattr(factory, "start_commit", False))


def register_retry_policy(name: str, factory: RetryPolicyFactory) -> None:
    """Make ``factory`` available as ``retry_policy_factory=name``."""
    if not callable(factory):
        raise TypeError("a retry policy factory must be callable")
    _named[name] = factory


def unregister_retry_policy(name: str) -> None:
    """Forget a named factory (KeyError if unknown)."""
    del _named[name]


def registered_retry_policies() -> list[str]:
    """The names that ``retry_policy_factory=name`` may use in this process, sorted."""
    return sorted(_named)


def named_retry_policy(name: str) -> RetryPolicyFactory:
    """Return the factory registered as ``name``; UnknownRetryPolicyError lists the known ones."""
    try:
        return _named[name]
    except KeyError:
        raise UnknownRetryPolicyError(
            f"no retry policy registered as {name!r} in this process "
            f"(registered: {', '.join(registered_retry_policies()) or 'none'}); "
            "register it with zasync.register_retry_policy() in every process "
            "that puts or runs such jobs, or pass a factory instead of a name"
        ) from None


def check_retry_policy_factory(factory: Any) -> None:
    """Refuse, before anything changes, a factory a job could not use: TypeError or LookupError."""
    if factory is None:
        return
    if isinstance(factory, str):
        named_retry_policy(factory)
    elif not callable(factory):
        raise TypeError("retry_policy_factory must be a registered name or a callable")


#: The policies that come with zasync, registered under these names in every process.
BUILTIN_NAMES: dict[str, RetryPolicyFactory] = {
    "common": RetryCommonFourTimes,
    "forever": RetryCommonForever,
    "never": NeverRetry,
}
_named.update(BUILTIN_NAMES)
