"""``@zasync.task``: a module-level function with its job options, and a ``put``.

The decorated name becomes a :class:`Task`: calling it calls the function
(so it stays an ordinary function for tests and for other code), and
``task.put(target, *args, **kwargs)`` puts a job calling it, with the
task's options, in the caller's transaction.  A job stores the task by its
module and name, exactly as it would store the plain function: a worker that
imports the module gets the task back, and calls it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from zasync.errors import InvalidValueError
from zasync.interfaces import IQueue
from zasync.model.backoff import retry_factory
from zasync.model.job import Job
from zasync.model.priority import check_priority
from zasync.model.timelimit import check_timeout
from zasync.model.unique import check_unique

if TYPE_CHECKING:
    from zasync.model.queue import Queue

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """What a task's jobs are put with; see :func:`task`."""

    queue: str = ""
    retry: Any = None
    quota_names: tuple[str, ...] = ()
    begin_by: datetime.timedelta | None = None
    failure_log_level: int | None = None
    unique_key: str | Callable[..., str] | None = None
    unique_until: str | None = None
    priority: int | None = None
    rate_limits: tuple[str, ...] = ()
    timeout: float | datetime.timedelta | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.queue, str):
            raise InvalidValueError(f"a task's queue is a queue name (str), not {self.queue!r}")
        if isinstance(self.quota_names, str | bytes) or not all(
            isinstance(name, str) for name in self.quota_names
        ):
            raise InvalidValueError(
                f"a task's quota_names are quota names (strs), not {self.quota_names!r}"
            )
        if self.begin_by is not None and (
            not isinstance(self.begin_by, datetime.timedelta)
            or self.begin_by < datetime.timedelta(0)
        ):
            raise InvalidValueError(
                f"a task's begin_by is a timedelta of 0 or more, not {self.begin_by!r}"
            )
        if self.failure_log_level is not None and (
            not isinstance(self.failure_log_level, int) or isinstance(self.failure_log_level, bool)
        ):
            raise InvalidValueError(
                f"a task's failure_log_level is a logging level (an int), "
                f"not {self.failure_log_level!r}"
            )
        object.__setattr__(self, "retry", retry_factory(self.retry))
        check_priority(self.priority, "a task's priority")
        if isinstance(self.rate_limits, str | bytes) or not all(
            isinstance(name, str) for name in self.rate_limits
        ):
            raise InvalidValueError(
                f"a task's rate_limits are rate limit names (strs), not {self.rate_limits!r}"
            )
        object.__setattr__(self, "rate_limits", tuple(self.rate_limits))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, "a task's timeout"))
        if callable(self.unique_key):
            check_unique("key", self.unique_until)
        else:
            check_unique(self.unique_key, self.unique_until)

    def key_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """The unique key of a put with these arguments: the template filled, or the function's."""
        if self.unique_key is None:
            return None
        if callable(self.unique_key):
            return self.unique_key(*args, **kwargs)
        try:
            return self.unique_key.format(*args, **kwargs)
        except (IndexError, KeyError, ValueError, AttributeError) as e:
            raise InvalidValueError(
                f"the task's unique_key {self.unique_key!r} does not fit the arguments "
                f"{args!r}, {kwargs!r}: {type(e).__name__}: {e}"
            ) from None


class Task(Generic[P, R]):
    """A module-level function decorated with :func:`task`; see the module documentation."""

    def __init__(self, func: Callable[P, R], options: TaskOptions) -> None:
        if "<locals>" in func.__qualname__ or func.__name__ == "<lambda>":
            raise InvalidValueError(
                f"@zasync.task needs a module-level function (a worker imports it by "
                f"name), not {func.__qualname__!r}"
            )
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.__qualname__: str = func.__qualname__
        self._options = options
        self._origin = self  # what a job stores: the task its module holds

    @property
    def options(self) -> TaskOptions:
        """The options this task's jobs are put with."""
        return self._options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self) -> str:
        # Stored by reference, like the function it replaces in its module (a
        # copy made by with_options, as the task itself).
        return str(self._origin.__qualname__)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """The same task with some options changed, for one put: ``t.with_options(queue="x")``."""
        return _bound(self, dataclasses.replace(self._options, **changes))

    def job(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """A job calling this task, not put anywhere (for callbacks, ``serial``, ``parallel``).

        The queue options (retry, quotas, deadline, log level) apply when it is put.
        """
        return Job(self._origin, *args, **kwargs)

    def put(self, target: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Put a job calling this task into ``target`` in the caller's transaction; return it.

        ``target`` is a queue, or a connection whose queue named by the task's
        ``queue`` option is used.  Nothing happens unless the transaction commits.
        """
        queue = self._queue(target)
        options = self._options
        job: Job[R] = queue.put(
            self.job(*args, **kwargs),
            begin_by=options.begin_by,
            quota_names=options.quota_names or None,
            failure_log_level=options.failure_log_level,
            retry_policy_factory=options.retry,
            unique_key=options.key_for(args, kwargs),
            unique_until=options.unique_until if options.unique_key is not None else None,
            priority=options.priority,
            rate_limits=options.rate_limits or None,
            timeout=options.timeout,
        )
        return job

    def _queue(self, target: Any) -> Queue:
        if IQueue.providedBy(target):
            return target  # type: ignore[no-any-return]  # zope.interface is untyped
        if callable(getattr(target, "root", None)):  # a ZODB connection
            from zasync.model.queue import get_queue

            return get_queue(target, self._options.queue)
        raise InvalidValueError(
            f"{self.__qualname__}.put needs a queue or a ZODB connection first, not {target!r}"
        )

    def __repr__(self) -> str:
        return f"<zasync.Task {self.__module__}.{self.__qualname__}>"


def _bound(task: Task[P, R], options: TaskOptions) -> Task[P, R]:
    """A copy of ``task`` with other options; it pickles as the task itself."""
    copy: Task[P, R] = Task.__new__(Task)
    copy.__dict__.update(task.__dict__)
    copy._options = options
    return copy


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    queue: str = "",
    retry: Any = None,
    quota_names: Iterable[str] = (),
    begin_by: datetime.timedelta | None = None,
    failure_log_level: int | None = None,
    unique_key: str | Callable[..., str] | None = None,
    unique_until: str | None = None,
    priority: int | None = None,
    rate_limits: Iterable[str] = (),
    timeout: float | datetime.timedelta | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "",
    retry: Any = None,
    quota_names: Iterable[str] = (),
    begin_by: datetime.timedelta | None = None,
    failure_log_level: int | None = None,
    unique_key: str | Callable[..., str] | None = None,
    unique_until: str | None = None,
    priority: int | None = None,
    rate_limits: Iterable[str] = (),
    timeout: float | datetime.timedelta | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a module-level function as a task: ``@zasync.task`` or ``@zasync.task(...)``.

    ``queue``: the name of the queue ``put(connection, ...)`` uses (default
    ``''``); ``retry``: a :class:`~zasync.model.backoff.Retry`, a number of
    attempts, a retry policy factory or a registered name (``'never'``, ...);
    ``quota_names``; ``begin_by``: how long after its due time the job may
    still start; ``failure_log_level``; ``unique_key``: a template filled
    with each put's arguments (``"invoice-{0}"``, ``"sync-{account}"``) or a
    function of them returning the key, and ``unique_until`` (see
    :meth:`Queue.put <zasync.model.queue.Queue.put>`); ``priority`` (-100 to
    100, higher first); ``rate_limits`` (names of rate limits of the queue);
    ``timeout`` (seconds or a timedelta: the longest a job may run).
    Bad options raise
    InvalidValueError (UnknownRetryPolicyError for an unregistered policy
    name) when the module is imported, not at the first put.
    """
    options = TaskOptions(
        queue=queue,
        retry=retry,
        # A lone name is refused below, not split into letters.
        quota_names=quota_names if isinstance(quota_names, str | bytes) else tuple(quota_names),  # type: ignore[arg-type]
        begin_by=begin_by,
        failure_log_level=failure_log_level,
        unique_key=unique_key,
        unique_until=unique_until,
        priority=priority,
        rate_limits=rate_limits if isinstance(rate_limits, str | bytes) else tuple(rate_limits),  # type: ignore[arg-type]
        timeout=timeout,
    )

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(function, options)

    return decorate if func is None else decorate(func)
