"""What a job is: its call, arguments, status, times, annotations and schedule.

:class:`JobRecord` is the stored half of :class:`~zasync.model.job.Job`: the
data, the status transitions (one method each, see ``IJob``), and how a
concurrent change to it merges.  How a job runs and commits is the other
half, in :mod:`zasync.model.job`.  Only the subclass is ever stored.
"""

from __future__ import annotations

import datetime
import inspect
import types
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, NamedTuple, Self, TypeVar, overload

from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError

from zasync import clock
from zasync._logtext import one_line
from zasync.errors import InvalidValueError, NotStoredError, UnknownQuotaError
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    BadStatusError,
    IAgent,
    IDispatcherAgents,
    IJob,
    IQueue,
    Status,
)
from zasync.model._arguments import ArgumentList, ArgumentMapping
from zasync.model._base import Base
from zasync.model.completed import long_to_dt
from zasync.model.failure import Failure
from zasync.schema import ATTEMPTS

#: The type of a job's result (see :class:`~zasync.model.job.Job`).
R = TypeVar("R")

_MICROSECOND = datetime.timedelta(microseconds=1)
#: The failed attempts a job's history keeps (the newest ones).
MAX_KEPT_ATTEMPTS = 100
MAX_ERROR_TEXT = 300


class Attempt(NamedTuple):
    """One attempt of a job that failed and was tried again."""

    number: int
    start: datetime.datetime | None
    end: datetime.datetime | None
    error: str


class JobRecord(Base, Generic[R]):
    """The stored state of a job and its transitions; see :class:`~zasync.model.job.Job`."""

    # ``Job[int](f)`` would store the alias in the job's record: refuse it
    # (typing ignores the refusal).
    __orig_class__ = property()

    _status: str = NEW.value
    _result: Any = None
    # Times are stored as integer microseconds (clock.to_stamp), and the
    # assigner's UUID as an int: they pickle several times more cheaply than
    # datetimes and UUID objects, and a job is pickled at every commit it joins.
    _active_start: int | None = None
    _active_end: int | None = None
    _begin_after: int | None = None
    _assigner: int | None = None
    _begin_by: datetime.timedelta | None = None
    _quota_names: tuple[str, ...] = ()
    _callbacks: tuple[JobRecord[Any], ...] = ()
    _annotations: OOBTree | None = None
    _retry_policy: Any = None
    _callable_root: Any = None
    _callable_name: str | None = None
    # (unique key, "started" or "finished"): see zasync.model.unique.
    _unique: tuple[str, str] | None = None
    _priority: int = 0  # see zasync.model.queue.Queue.put; set while NEW only
    _time_limit: float | None = None  # seconds, see zasync.model.timelimit
    _rate_limit_names: tuple[str, ...] = ()  # see zasync.model.ratelimit
    _target: int | None = None  # a broadcast copy's worker (UUID int), see model.broadcast
    # Dependencies: (the jobs, "fail" or "run"), and why it must fail without
    # running; see zasync.model.dependencies.
    _after: tuple[tuple[Any, ...], str] | None = None
    _unmet: str | None = None
    _queue_key: Any = None  # the job's key in its queue's lane, while pending
    key: int | None = None
    failure_log_level: int | None = None
    retry_policy_factory: Any = None

    @overload
    def __init__(
        self, callable: Callable[..., Coroutine[Any, Any, R]], /, *args: Any, **kwargs: Any
    ) -> None: ...

    @overload
    def __init__(self, callable: Callable[..., R], /, *args: Any, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args:
            raise TypeError("Job() needs a callable as its first argument")
        callable_, *rest = args
        self._args: list[Any] = rest
        self._kwargs: dict[str, Any] = kwargs
        self.callable = callable_

    @classmethod
    def bind(cls, callable: Callable[..., Any], *args: Any, **kwargs: Any) -> Self:
        """Make a job whose callable receives the job itself as first argument."""
        job = cls(callable, *args, **kwargs)
        job.args.insert(0, job)
        return job

    # -- the arguments ---------------------------------------------------------

    @property
    def args(self) -> ArgumentList:
        """The positional arguments: a list, stored in the job's own record."""
        return ArgumentList(self, self._args)

    @args.setter
    def args(self, value: Iterable[Any]) -> None:
        self._args = list(value)

    @property
    def kwargs(self) -> ArgumentMapping:
        """The keyword arguments: a dict, stored in the job's own record."""
        return ArgumentMapping(self, self._kwargs)

    @kwargs.setter
    def kwargs(self, value: Mapping[str, Any]) -> None:
        self._kwargs = dict(value)

    # -- the callable ----------------------------------------------------------

    @property
    def callable(self) -> Callable[..., Any]:
        """What the job calls (settable while the stored status is NEW; see IJob)."""
        found: Callable[..., Any] = (
            self._callable_root
            if self._callable_name is None
            else getattr(self._callable_root, self._callable_name)
        )
        return found

    @callable.setter
    def callable(self, value: Callable[..., Any]) -> None:
        if self._status != NEW:
            raise BadStatusError(
                "can only set callable when a job has NEW, PENDING, or ASSIGNED status"
            )
        if not callable(value):
            raise TypeError(f"{value!r} is not callable")
        root, name = _bound_parts(value)
        self._callable_root = root
        self._callable_name = name
        # A job wrapping another job's method (fail, handleInterrupt, ...) makes
        # that job findable through it, unless the job already has a home.
        if IJob.providedBy(root) and root.parent is None:
            root.parent = self

    # -- transitions (the table in IJob's docstring) ----------------------------
    #
    # The only writers of ``_status`` and of the job's times.  Each checks the
    # stored status first and changes nothing when it refuses.

    def _require(self, allowed: tuple[Status, ...], transition: str) -> None:
        if self._status not in allowed:
            names = " or ".join(s.name for s in allowed)
            raise BadStatusError(
                f"{transition} needs a job with stored status {names}, "
                f"not {self._status.upper()}: {self!r}",
                job=self,
            )

    def _mark_active(self, now: datetime.datetime) -> None:
        """NEW -> ACTIVE: claimed (by a dispatcher's claim transaction) or called."""
        self._require((NEW,), "starting")
        self._status = ACTIVE.value
        self._active_start = clock.to_stamp(now)

    def _unclaim(self) -> None:
        """ACTIVE -> NEW: claimed but never run, interrupted and retried, or rescheduled.

        A NEW job stays as it is.
        """
        self._require((NEW, ACTIVE), "unclaiming")
        self._status = NEW.value
        self._active_start = None

    def _record_failed_attempt(self, error: str) -> None:
        """Keep the attempt that just ended, and why, in the job's history (see ATTEMPTS).

        Called before the job goes back to its queue for another attempt.
        """
        history = self.get_annotation(ATTEMPTS, ())
        number = history[-1][0] + 1 if history else 1
        entry = (
            number,
            self._active_start,
            clock.to_stamp(clock.utcnow()),
            one_line(error, MAX_ERROR_TEXT),
        )
        self._annotations_for_writing()[ATTEMPTS] = (*history, entry)[-MAX_KEPT_ATTEMPTS:]

    @property
    def rate_limit_names(self) -> tuple[str, ...]:
        """The rate limits of its queue this job counts against when it starts."""
        return self._rate_limit_names

    @property
    def timeout(self) -> float | None:
        """Its own run-time limit in seconds (``put(..., timeout=)``), or None for the defaults."""
        return self._time_limit

    @property
    def priority(self) -> int:
        """The priority it was put with: higher runs first among due jobs (default 0)."""
        return self._priority

    @property
    def failed_attempts(self) -> tuple[Attempt, ...]:
        """The attempts that failed and were tried again, oldest first (at most 100 kept)."""
        return tuple(
            Attempt(number, clock.from_stamp(start), clock.from_stamp(end), error)
            for number, start, end, error in self.get_annotation(ATTEMPTS, ())
        )

    def _reset(self) -> None:
        """Any status -> NEW: a quarantined job released to run again."""
        self._status = NEW.value
        self._active_start = None

    def _store_result(self, res: Any) -> None:
        """NEW or ACTIVE -> CALLBACKS: the result (a Failure for errors) is stored."""
        self._require((NEW, ACTIVE), "storing a result")
        self._result = res
        self._status = CALLBACKS.value
        self._active_end = clock.to_stamp(clock.utcnow())

    def _mark_completed(self) -> None:
        """CALLBACKS -> COMPLETED: every callback is done (see :meth:`_complete` for filing)."""
        self._require((CALLBACKS,), "completing")
        self._status = COMPLETED.value

    # -- read-only state -------------------------------------------------------

    @property
    def stored_status(self) -> Status:
        """The status as stored: NEW stands for NEW, PENDING and ASSIGNED alike.

        Reading it loads nothing but the job, where :attr:`status` walks the
        parents to tell a waiting job's place.
        """
        return Status(self._status)

    @property
    def status(self) -> Status:
        """The status: the stored one, or for a waiting job, where it waits (see IJob)."""
        if self._status != NEW:
            return Status(self._status)
        ob = self.parent
        while ob is not None and IJob.providedBy(ob):
            ob = ob.parent
        if IAgent.providedBy(ob):
            return ASSIGNED
        if IQueue.providedBy(ob):
            return PENDING
        return NEW

    @property
    def result(self) -> R | Failure | None:
        """The result: the callable's return value, a Failure, or None until there is one."""
        return self._result  # type: ignore[no-any-return]

    @property
    def id(self) -> str:
        """A stable id: the job's object id in decimal, as ``zasync job ID`` and URLs take it.

        NotStoredError until the job is stored (put it in a queue and commit).
        """
        oid = self._p_oid
        if oid is None:
            raise NotStoredError(
                f"{self!r} has no id yet: put it in a queue and commit first", job=self
            )
        return str(int.from_bytes(oid, "big"))

    @property
    def active_start(self) -> datetime.datetime | None:
        """When the job became ACTIVE, or None."""
        return clock.from_stamp(self._active_start)

    @property
    def active_start_us(self) -> int | None:
        """:attr:`active_start` as stored: integer microseconds (``clock.to_stamp``), or None."""
        return self._active_start

    @property
    def active_end(self) -> datetime.datetime | None:
        return clock.from_stamp(self._active_end)

    @property
    def assignerUUID(self) -> uuid.UUID | None:
        """The UUID of the process that put the job in a queue (alias: ``assigner_uuid``)."""
        return None if self._assigner is None else uuid.UUID(int=self._assigner)

    @assignerUUID.setter
    def assignerUUID(self, value: uuid.UUID | None) -> None:
        self._assigner = None if value is None else uuid.UUID(str(value)).int

    assigner_uuid = assignerUUID

    @property
    def initial_callbacks_end(self) -> datetime.datetime | None:
        if not self.key:
            return None

        return long_to_dt(self.key)

    @property
    def callbacks(self) -> tuple[JobRecord[Any], ...]:
        return self._callbacks

    @property
    def annotations(self) -> MutableMapping[str, Any]:
        """A mapping for metadata; the stored mapping is created by the first write.

        Reading a job's annotations never writes the job: a job reading its
        own annotations while another connection sets a live annotation
        would otherwise make its result commit conflict, and run again.
        """
        if self._annotations is None:
            return _AnnotationsOnDemand(self)
        return self._annotations  # type: ignore[no-any-return]

    def _annotations_for_writing(self) -> OOBTree:
        if self._annotations is None:
            self._annotations = OOBTree()
        return self._annotations

    def get_annotation(self, name: str, default: Any = None) -> Any:
        """Read an annotation without creating the annotations mapping."""
        if self._annotations is None:
            return default
        return self._annotations.get(name, default)

    @property
    def queue(self) -> Any:
        ob = self.parent
        while ob is not None and not IQueue.providedBy(ob):
            if not (
                IJob.providedBy(ob) or IAgent.providedBy(ob) or IDispatcherAgents.providedBy(ob)
            ):
                return None
            ob = ob.parent
        return ob

    @property
    def agent(self) -> Any:
        ob = self.parent
        while ob is not None and IJob.providedBy(ob):
            ob = ob.parent
        return ob if IAgent.providedBy(ob) else None

    # -- scheduling ------------------------------------------------------------

    @property
    def begin_after(self) -> datetime.datetime | None:
        return clock.from_stamp(self._begin_after)

    @begin_after.setter
    def begin_after(self, value: datetime.datetime | datetime.timedelta | None) -> None:
        """An aware datetime, or a timedelta from now (``zasync.clock.utcnow()``)."""
        if self.status != NEW:
            raise BadStatusError("can only set begin_after when a job has NEW status", job=self)
        self._begin_after = None if value is None else clock.to_stamp(clock.absolute(value))

    @property
    def begin_by(self) -> datetime.timedelta | None:
        return self._begin_by

    @begin_by.setter
    def begin_by(self, value: datetime.timedelta | None) -> None:
        if self.status not in (NEW, PENDING):
            raise BadStatusError("can only set begin_by when a job has NEW or PENDING status")
        if value is not None:
            if not isinstance(value, datetime.timedelta):
                raise TypeError("begin_by must be a datetime.timedelta or None")
            if value < datetime.timedelta(0):
                raise InvalidValueError(
                    f"negative values are not allowed for begin_by: {value!r}", job=self
                )
        self._begin_by = value

    @property
    def quota_names(self) -> tuple[str, ...]:
        return self._quota_names

    @quota_names.setter
    def quota_names(self, value: Iterable[str]) -> None:
        if isinstance(value, str | bytes):
            raise TypeError("provide an iterable of names")
        status = self.status
        if status not in (NEW, PENDING):
            raise BadStatusError("can only set quota_names when a job has NEW or PENDING status")
        names = tuple(value)
        if status == PENDING:
            quotas = self.queue.quotas
            for name in names:
                if name not in quotas:
                    raise UnknownQuotaError(
                        f"unknown quota name {name!r}: create it first, with "
                        f"queue.quotas.create({name!r}, size)",
                        name=name,
                        job=self,
                        queue=self.queue,
                    )
        self._quota_names = names

    def _expired(self, now: datetime.datetime | None = None) -> bool:
        """True once ``begin_after + begin_by`` has passed."""
        if self._begin_by is None or self._begin_after is None:
            return False
        deadline = self._begin_after + self._begin_by // _MICROSECOND
        return deadline < clock.to_stamp(now or clock.utcnow())

    # -- callbacks -------------------------------------------------------------

    # -- conflicts ---------------------------------------------------------------

    def _p_resolveConflict(
        self, old: dict[str, Any], committed: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge two kinds of concurrent change, which would otherwise run a job again.

        * A job's first live annotation (written from another connection
          while the job runs) creates ``annotations`` on the job; the job's
          own commit must not conflict with that, or its policy would run it
          again.
        * A callback added (committed first) while the job stores its result:
          the result commit keeps the result and takes the callbacks, and the
          job then runs them (its status becomes CALLBACKS rather than
          COMPLETED).  Re-running the job for bookkeeping that happened beside
          it would repeat its effects outside the database.

        Any other concurrent change to a job is a real conflict.
        """
        try:
            merged = _merge_late_callbacks(old, committed, new)
        except ValueError:  # persistent references that cannot be compared
            merged = None
        if merged is not None:
            return merged
        key = "_annotations"
        for created, other in ((committed, new), (new, committed)):
            created_there = old.get(key) is None and created.get(key) is not None
            if (
                created_there
                and other.get(key) is None
                and _without(old, key) == _without(created, key)
            ):
                merged = dict(other)
                merged[key] = created[key]
                return merged
        raise ConflictError(oid=self._p_oid)


class _AnnotationsOnDemand(MutableMapping[str, Any]):
    """A job's annotations before any was stored: empty to read, made on first write."""

    __slots__ = ("_job",)

    def __init__(self, job: JobRecord[Any]) -> None:
        self._job = job

    def _stored(self) -> Any:
        return self._job._annotations  # another transaction may have made it meanwhile

    def __getitem__(self, name: str) -> Any:
        stored = self._stored()
        if stored is None:
            raise KeyError(name)
        return stored[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._job._annotations_for_writing()[name] = value

    def __delitem__(self, name: str) -> None:
        stored = self._stored()
        if stored is None:
            raise KeyError(name)
        del stored[name]

    def __iter__(self) -> Iterator[str]:
        stored = self._stored()
        return iter(()) if stored is None else iter(stored)

    def __len__(self) -> int:
        stored = self._stored()
        return 0 if stored is None else len(stored)


_RESULT_STATUSES = (CALLBACKS.value, COMPLETED.value)


def _merge_late_callbacks(
    old: dict[str, Any], committed: dict[str, Any], new: dict[str, Any]
) -> dict[str, Any] | None:
    """``new`` (a result commit) with the callbacks ``committed`` appended meanwhile, or None."""
    key = "_callbacks"
    before = tuple(old.get(key, ()))
    added = tuple(committed.get(key, ()))
    if len(added) <= len(before) or added[: len(before)] != before:
        return None  # the other transaction did not (only) append callbacks
    if tuple(new.get(key, ())) != before or _without(committed, key) != _without(old, key):
        return None
    if old.get("_status") != ACTIVE.value or new.get("_status") not in _RESULT_STATUSES:
        return None  # not a result commit racing with addCallback
    merged = dict(new)
    merged[key] = committed[key]
    merged["_status"] = CALLBACKS.value  # the new callbacks still have to run
    return merged


def _without(state: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != key}


def _bound_parts(value: Any) -> tuple[Any, str | None]:
    """Split a bound method into (object, name); anything else is (value, None)."""
    if isinstance(value, types.MethodType | types.BuiltinMethodType | types.MethodWrapperType):
        owner = getattr(value, "__self__", None)
        if owner is not None and not inspect.ismodule(owner) and not isinstance(owner, type):
            return owner, value.__name__
    return value, None
