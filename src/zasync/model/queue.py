"""Queues: where pending jobs wait to be claimed, in ``root[KEY]``.

Storage design (why it is not one list): many transactions put and claim at
once, and each writes only what it must.  Pending jobs live in a few
OOBTree "lanes", a job's lane chosen by its oid.  Concurrent puts therefore
usually touch different lanes, and when they touch the same bucket ZODB's
BTree conflict resolution merges them.  The job count is a ``BTrees.Length``,
which also merges.  The queue object itself is never written by ``put`` or
``claim``.

Each job's key in its lane is ``(rank, time, database name, oid)``: rank 0 for
jobs put back at the front (``putBack``), rank 1 otherwise; ``time`` is when
the job becomes due (``max(begin_after, time of put)``, in microseconds).
Iterating the lanes merged by key gives the claim order (put-backs first, then
by due time), and a job is due exactly when its key's time is not in the
future.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import logging
import operator
import uuid as uuid_module
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar, overload

import zope.event
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError
from zope.interface import implementer

from zasync import clock
from zasync._dbtime import learn_at_commit, seen_now
from zasync._logtext import short_repr
from zasync.errors import (
    DependencyFailedError,
    InvalidValueError,
    NotHereError,
    NotNewError,
    NotQueuedBeforeError,
    UnknownQuotaError,
)
from zasync.identity import get_process_uuid
from zasync.interfaces import (
    KEY,
    NEW,
    AbortedError,
    IJob,
    IQueue,
    TimeoutError,
    UnloadableJobError,
    ZasyncError,
)
from zasync.model import broadcast, dependencies, unique
from zasync.model._base import Base, MappingBase, database_name, oid_int
from zasync.model._pickling import check_storable
from zasync.model.backoff import retry_factory
from zasync.model.completed import CompletedCollection
from zasync.model.dispatchers import Dispatchers
from zasync.model.events import ObjectAdded
from zasync.model.job import Job, as_job
from zasync.model.lanes import LANES, OWN_LEAD, Lane, Lanes, Share, as_share, lane_of
from zasync.model.priority import check_priority
from zasync.model.quarantine import (
    QuarantinedJob,
    log_quarantined,
    stamp_now,
    storing_problem,
    unsound,
)
from zasync.model.quota import Quotas
from zasync.model.ratelimit import RateLimit, RateLimits
from zasync.model.retry import check_retry_policy_factory
from zasync.model.timelimit import check_timeout
from zasync.model.tx import TRANSACTION_ERRORS, disconnect_errors
from zasync.model.unique import check_unique

#: The longest reason :meth:`Queue.pause` keeps (it is shown in one line).
MAX_REASON = 200

#: The result type of a job put in a queue.
R = TypeVar("R")

LANE_WINDOW = 2 * LANES
_PUT_BACK, _NORMAL = 0, 1

QueueKey = tuple[int, int, str, bytes]
#: A lane of one bucket keeps this key first.  ZODB's BTrees refuse to merge
#: concurrent changes to a bucket when one of them deletes the bucket's first
#: key or empties it; with this key in place a claim (which deletes the first
#: jobs) merges with puts and with other claims of other jobs in its bucket.
#: A lane of several buckets drops it once it is alone in the first bucket:
#: the tree object changes whenever a claim deletes the first key of a bucket
#: other than its first, and every writer of the lane reads the tree.
_KEEP_FIRST: QueueKey = (-1, 0, "", b"")
_FIRST_JOB = (0,)  # the smallest job key: lane.items(_FIRST_JOB) skips _KEEP_FIRST


def _tidy(lane: OOBTree) -> None:
    """Keep ``_KEEP_FIRST`` in a lane of one bucket; drop it where it is alone in the first."""
    state = lane.__getstate__()
    # A lane of one bucket: empty, the bucket inline, or a first bucket without a next one.
    if state is None or len(state) == 1 or len(state[1].__getstate__()) == 1:
        if _KEEP_FIRST not in lane:
            lane[_KEEP_FIRST] = None
    elif len(state[1]) == 1 and _KEEP_FIRST in state[1]:
        del lane[_KEEP_FIRST]  # empties the first bucket, which the tree then drops


def _as_lane(lane: OOBTree) -> Lane:
    """A :class:`Lane` with ``lane``'s entries; ``lane`` is emptied."""
    if isinstance(lane, Lane):
        return lane
    copy = Lane.new({_KEEP_FIRST: None})
    copy.update(lane)
    # Emptying writes every bucket of the old lane: a put or a claim that still
    # holds it then conflicts and is retried on the new lane, instead of
    # committing into a tree that no queue reaches any more.
    for key in list(lane.keys()):
        del lane[key]
    # An old lane that was empty already (lanes made before the kept first key,
    # or emptied by removals) has no bucket to write: a put into it writes its
    # root alone, so store the root too, or that put commits into a lane no
    # queue reaches (or the copy misses a job a put committed into it meanwhile).
    lane._p_changed = True
    return copy


class Queues(MappingBase):
    """The named queues of a database; ``queues['']`` is the default one."""

    def __init__(self) -> None:
        self._data = OOBTree()

    def __setitem__(self, name: str, queue: Any) -> None:
        if not IQueue.providedBy(queue):
            raise InvalidValueError(f"value must be IQueue (a zasync.Queue), not {queue!r}")
        old = self._data.get(name)
        if old is not None and old is not queue:
            old.name = old.parent = None
        queue.name = name
        queue.parent = self
        self._data[name] = queue

    def __delitem__(self, name: str) -> None:
        self.pop(name)

    def pop(self, name: str, *default: Any) -> Any:
        """Remove and return a queue (its ``name`` and ``parent`` become None)."""
        if name not in self._data:
            if default:
                return default[0]
            raise KeyError(name)
        queue = self._data.pop(name)
        queue.name = queue.parent = None
        return queue

    copy = None

    def _accepts(self, key: object) -> bool:
        return isinstance(key, str)


@implementer(IQueue)
class Queue(Base):
    """Pending jobs in claim order; see IQueue."""

    name: str | None = None
    _cancelled: CompletedCollection | None = None
    _quarantine: OOBTree | None = None
    _paused_at: datetime.datetime | None = None  # see pause(); queues made before lack it
    _default_timeout: float | None = None  # seconds; see zasync.model.timelimit
    _pause_reason: str | None = None
    _unique: OOBTree | None = None  # unique key -> job, see zasync.model.unique
    _waiting: OOBTree | None = None  # jobs waiting for others, see zasync.model.dependencies
    _bands: OOBTree | None = None  # priority (not 0) -> its lanes; see _lanes_of
    _schedules: OOBTree | None = None  # name -> Schedule, see zasync.model.periodic
    _rate_limits: RateLimits | None = None  # see rate_limits
    _v_putting: Any = None  # the transaction of this connection's latest put

    def __init__(self) -> None:
        self.quotas = Quotas(self)
        self.dispatchers = Dispatchers(self)
        self._lanes = tuple(Lane.new({_KEEP_FIRST: None}) for _ in range(LANES))
        self._length = Length()

    # -- storage -----------------------------------------------------------------

    @property
    def lane_count(self) -> int:
        """How many lanes this queue keeps its pending jobs in."""
        return len(self._lanes)

    def upgrade_lanes(self) -> bool:
        """Give a queue made before :class:`Lane` existed such lanes; True if so.

        Its plain OOBTree lanes cannot merge a put's changes at their tail
        with a claim's at their head.  The jobs keep their keys.
        """
        if all(isinstance(lane, Lane) for lane in self._lanes):
            return False
        self._lanes = tuple(_as_lane(lane) for lane in self._lanes)
        return True

    def _lanes_of(self, priority: int, make: bool = False) -> tuple[OOBTree, ...]:
        """The lanes of a priority: the queue's own for 0, a band of their own for others.

        A band is made (with as many lanes as the queue's own) by the first
        job of its priority and kept: a queue whose jobs all have priority 0
        never has one, so priorities cost nothing until used.
        """
        if priority == 0:
            return self._lanes
        found = None if self._bands is None else self._bands.get(priority)
        if found is None:
            if not make:
                raise KeyError(priority)
            if self._bands is None:
                self._bands = OOBTree()
            found = tuple(Lane.new({_KEEP_FIRST: None}) for _ in range(len(self._lanes)))
            self._bands[priority] = found
        return found

    def _bands_in_claim_order(self) -> list[tuple[OOBTree, ...]]:
        """Every band's lanes, the highest priority first (priority 0 among them)."""
        if self._bands is None:
            return [self._lanes]
        bands = {0: self._lanes, **dict(self._bands.items())}
        return [bands[priority] for priority in sorted(bands, reverse=True)]

    def _lane(self, job: Job[Any], make: bool = False) -> OOBTree:
        lanes = self._lanes_of(job._priority, make)
        return lanes[lane_of(job._p_oid, len(lanes))]

    def _insert(self, job: Job[Any], rank: int, due: datetime.datetime) -> None:
        key: QueueKey = (rank, clock.to_stamp(due), database_name(job) or "", job._p_oid)
        lane = self._lane(job, make=True)
        lane[key] = job
        if isinstance(lane, Lane) and self._batching():
            lane.hold_root()
        job._queue_key = key
        job.parent = self
        self._length.change(1)
        if job._unique is not None:
            unique.retake(self, job)

    def _batching(self) -> bool:
        """Whether this transaction put into this queue before (a batch of puts).

        A batch stores the lanes' roots (:meth:`~zasync.model.lanes.Lane.hold_root`):
        it runs long, and claims change the roots meanwhile.  A single put
        keeps its commit one record smaller.
        """
        current = self._jar().transaction_manager.get()
        if self._v_putting is current:
            return True
        self._v_putting = current
        return False

    def _remove(self, job: Job[Any], started: bool = False) -> None:
        """Take ``job`` out of its lane; ``started``: a claim, which keeps some unique keys."""
        del self._lane(job)[job._queue_key]
        job._queue_key = None
        job.parent = None
        self._length.change(-1)
        if job._unique is not None:
            unique.release(job, self, started)

    def _items(self) -> Iterator[tuple[QueueKey, Any]]:
        """Every pending job in the order claims would take them now.

        The jobs due now, by priority then key; then the others, by due time.
        """
        by_key = operator.itemgetter(0)
        bands = self._bands_in_claim_order()
        if len(bands) == 1:
            yield from heapq.merge(*(lane.items(_FIRST_JOB) for lane in bands[0]), key=by_key)
            return
        now_key = clock.to_stamp(clock.utcnow())
        for lanes in bands:
            yield from self._due(
                heapq.merge(*(lane.items(_FIRST_JOB) for lane in lanes), key=by_key), now_key
            )
        later = (_NORMAL, now_key + 1)
        yield from heapq.merge(
            *(lane.items(later) for lanes in bands for lane in lanes),
            key=lambda item: item[0][1:],
        )

    def _jar(self) -> Any:
        if self._p_jar is None:
            raise ZasyncError(
                "this queue is not stored in a database yet: add it (for example "
                "with zasync.install_queues(connection)) before putting jobs"
            )
        return self._p_jar

    # -- reading -----------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._length())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Job[Any]]:
        return (job for _, job in self._items())

    def __getitem__(self, index: int) -> Job[Any]:
        if index < 0:
            return list(self)[index]
        try:
            return next(itertools.islice(self, index, None))
        except StopIteration:
            raise IndexError(index) from None

    # -- putting -----------------------------------------------------------------

    @overload
    def put(
        self,
        item: Job[R],
        begin_after: datetime.datetime | datetime.timedelta | None = None,
        begin_by: datetime.timedelta | None = None,
        quota_names: Iterable[str] | None = None,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
        retry: Any = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        after: Iterable[Job[Any]] | None = None,
        on_dependency_failure: str = "fail",
        priority: int | None = None,
        rate_limits: Iterable[str] | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Job[R]: ...

    @overload
    def put(
        self,
        item: Callable[[], Coroutine[Any, Any, R]],
        begin_after: datetime.datetime | datetime.timedelta | None = None,
        begin_by: datetime.timedelta | None = None,
        quota_names: Iterable[str] | None = None,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
        retry: Any = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        after: Iterable[Job[Any]] | None = None,
        on_dependency_failure: str = "fail",
        priority: int | None = None,
        rate_limits: Iterable[str] | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Job[R]: ...

    @overload
    def put(
        self,
        item: Callable[[], R],
        begin_after: datetime.datetime | datetime.timedelta | None = None,
        begin_by: datetime.timedelta | None = None,
        quota_names: Iterable[str] | None = None,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
        retry: Any = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        after: Iterable[Job[Any]] | None = None,
        on_dependency_failure: str = "fail",
        priority: int | None = None,
        rate_limits: Iterable[str] | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Job[R]: ...

    def put(
        self,
        item: Any,
        begin_after: datetime.datetime | datetime.timedelta | None = None,
        begin_by: datetime.timedelta | None = None,
        quota_names: Iterable[str] | None = None,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
        retry: Any = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        after: Iterable[Job[Any]] | None = None,
        on_dependency_failure: str = "fail",
        priority: int | None = None,
        rate_limits: Iterable[str] | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Any:
        """Add a job, or a callable made into one, and return it; see IQueue.put.

        ``begin_after`` is an aware datetime, or a timedelta from now
        (``zasync.clock.utcnow()``); naive datetimes raise NaiveDatetimeError.
        ``retry`` declares the retry policy in one line: a
        :class:`~zasync.model.backoff.Retry`, or a number of attempts
        (``retry=5``); it is the same as ``retry_policy_factory``, which also
        takes the name of a registered policy or a factory.

        With ``unique_key``, a put while a job of this queue holds that key
        returns that job and adds nothing (the other options are not
        applied); ``unique_until`` is ``'started'`` (the default: the key is
        held while the job is pending) or ``'finished'`` (also while it
        runs).  See :mod:`zasync.model.unique`.

        With ``after``, a list of jobs of this database, the job waits until
        all of them have finished; if one did not succeed, it fails with
        DependencyFailedError (``on_dependency_failure="fail"``) or runs
        anyway (``"run"``).  See :mod:`zasync.model.dependencies`.

        ``priority``, a whole number from -100 to 100 (default 0): among the
        jobs that are due, a claim takes those of the highest priority first;
        equal priorities keep put order.  Strict: as long as higher-priority
        jobs are due, lower ones wait.  See :mod:`zasync.model.priority`.

        ``rate_limits`` names limits of this queue (see :attr:`rate_limits`)
        that the job counts against when it starts.

        ``timeout``, seconds or a timedelta: the longest the job may run; past
        it, its worker fails it with TimeLimitError, commits none of its
        changes and runs its callbacks.  Without it, the worker agent's
        default applies, then :attr:`default_timeout`.  See
        :mod:`zasync.model.timelimit`.
        """
        job = as_job(item)
        if job.status != NEW:
            raise NotNewError(
                f"cannot add already-assigned job: it is {job.status}; put a new Job "
                "(or pull it out of its queue first)",
                job=job,
                queue=self,
            )
        # Validate everything before changing anything: a refused put changes nothing.
        names = job.quota_names
        if quota_names is not None:
            if isinstance(quota_names, str | bytes):
                raise TypeError("provide an iterable of names")
            names = tuple(quota_names)
        for name in names:
            if name not in self.quotas:
                raise UnknownQuotaError(
                    f"unknown quota name {name!r}: create it first, with "
                    f"queue.quotas.create({name!r}, size)",
                    name=name,
                    job=job,
                    queue=self,
                )
        if begin_after is not None:
            begin_after = clock.absolute(begin_after)
        if begin_by is not None:
            if not isinstance(begin_by, datetime.timedelta):
                raise TypeError("begin_by must be a datetime.timedelta or None")
            if begin_by < datetime.timedelta(0):
                raise InvalidValueError(
                    f"negative values are not allowed for begin_by: {begin_by!r}", job=job
                )
        if failure_log_level is not None and not isinstance(failure_log_level, int):
            raise TypeError("failure_log_level must be a logging level (an int)")
        if retry is not None:
            if retry_policy_factory is not None:
                raise InvalidValueError(
                    "give retry= or retry_policy_factory=, not both: they are the same option",
                    job=job,
                    queue=self,
                )
            retry_policy_factory = retry_factory(retry)
        check_retry_policy_factory(
            job.retry_policy_factory if retry_policy_factory is None else retry_policy_factory
        )
        check_priority(priority)
        time_limit = check_timeout(timeout)
        limit_names = None if rate_limits is None else self._check_rate_limits(rate_limits, job)
        check_unique(unique_key, unique_until)
        waits_for = dependencies.check_dependencies(job, after, on_dependency_failure, self)
        check_storable(job)
        jar = self._jar()
        if unique_key is not None:
            existing = unique.holder(self, unique_key)
            if existing is not None:
                return existing

        if quota_names is not None:
            job.quota_names = names
        if failure_log_level is not None:
            job.failure_log_level = failure_log_level
        if retry_policy_factory is not None:
            job.retry_policy_factory = retry_policy_factory
        if priority is not None:
            job._priority = priority
        if time_limit is not None:
            job._time_limit = time_limit
        if limit_names is not None:
            job._rate_limit_names = limit_names
        now = clock.utcnow()
        if begin_after is not None:
            job.begin_after = begin_after
        elif job.begin_after is None:
            job.begin_after = now
        if begin_by is not None:
            job.begin_by = begin_by
        if job.assignerUUID is None:
            job.assignerUUID = get_process_uuid()
        if job._p_jar is None:
            jar.add(job)
        learn_at_commit(job)  # the put's commit tells this process the database's time
        if job._after is not None or job._unmet is not None:
            job._after = job._unmet = None  # put again: what it waited for before is over
        if unique_key is not None:
            unique.hold(self, job, unique_key, unique_until)
        if waits_for and dependencies.wait(self, job, waits_for, on_dependency_failure):
            return job
        self._insert(job, _NORMAL, max(job.begin_after, now))
        return job

    @property
    def default_timeout(self) -> float | None:
        """The time limit, in seconds, of jobs put without one (None: no limit).

        A worker agent's own default (``AgentSpec(timeout=...)``) comes
        before it.  Set it with seconds or a timedelta; None removes it.
        """
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, value: float | datetime.timedelta | None) -> None:
        self._default_timeout = check_timeout(value, "a queue's default_timeout")

    @property
    def rate_limits(self) -> RateLimits:
        """The rate limits of this queue, by name (made on first use)."""
        if self._rate_limits is None:
            self._rate_limits = RateLimits(self)
        return self._rate_limits

    def _check_rate_limits(self, names: Iterable[str], job: Job[Any]) -> tuple[str, ...]:
        if isinstance(names, str | bytes):
            raise InvalidValueError(
                "rate_limits is a list of names (rate_limits=['mail'])", job=job, queue=self
            )
        found = tuple(names)
        known = self._rate_limits
        for name in found:
            if known is None or name not in known:
                raise InvalidValueError(
                    f"unknown rate limit {name!r:.60}: create it first, with "
                    f"queue.rate_limits.set({name!r:.60}, count, per=seconds)",
                    job=job,
                    queue=self,
                )
        return found

    def insert_due(self, job: Job[Any]) -> None:
        """Put a job that waited for others into a lane, due now (or at its own later time)."""
        now = clock.utcnow()
        if job.begin_after is None or job.begin_after < now:
            job.begin_after = now  # a start deadline (begin_by) counts from here
        self._insert(job, _NORMAL, job.begin_after)

    @property
    def waiting(self) -> list[Job[Any]]:
        """The jobs waiting for others to finish (put with ``after``), in no lane yet."""
        return [] if self._waiting is None else list(self._waiting.values())

    def putBack(self, item: Job[Any]) -> None:
        """Return a previously claimed job to the front of the queue; see IQueue."""
        if not IJob.providedBy(item):
            raise TypeError("putBack needs a job")
        if item.status != NEW:
            raise NotNewError(
                f"can only put back a job with NEW status, not {item.status}",
                job=item,
                queue=self,
            )
        if item.begin_after is None or item._p_jar is None:
            raise NotQueuedBeforeError(
                "can only put back a job that was put in a queue before: use queue.put",
                job=item,
                queue=self,
            )
        self._insert(item, _PUT_BACK, clock.utcnow())

    # -- taking out --------------------------------------------------------------

    put_back = putBack

    def pull(self, index: int = 0) -> Job[Any]:
        """Remove and return the job at ``index``; it becomes NEW again."""
        job = self[index]
        self._remove(job)
        job.assignerUUID = None
        dependencies.settle_dependants_of(job)
        return job

    def remove(self, item: Any, settle_dependants: bool = True) -> None:
        """Remove a given pending (or waiting) job; ValueError if it is not in this queue.

        Jobs waiting for it then settle as if it had failed; cancelling
        passes ``settle_dependants=False``, as its callbacks tell them.
        """
        if getattr(item, "parent", None) is self and dependencies.drop_waiting(self, item):
            unique.release(item, self)
            item.assignerUUID = None
            if settle_dependants:
                dependencies.settle_dependants_of(item)
            return
        if getattr(item, "parent", None) is not self or getattr(item, "_queue_key", None) is None:
            raise NotHereError(
                f"{item!r} is not in this queue (its parent is {getattr(item, 'parent', None)!r})",
                job=item,
                queue=self,
            )
        self._remove(item)
        item.assignerUUID = None
        if settle_dependants:
            dependencies.settle_dependants_of(item)

    # -- quarantine (see zasync.model.quarantine) ---------------------------------------

    def quarantine(self, job: Any, cause: str, key: QueueKey | None = None) -> None:
        """Move a job that cannot be loaded or stored into :attr:`quarantined`.

        The job itself is neither loaded nor written (it may be unable to be
        either).  With ``key``, it is taken out of its lane by that key first.
        """
        if key is not None:
            self.drop_pending(key)
        for quota in self.quotas.values():  # its slots: it will not run
            quota.discard(job)
        if self._quarantine is None:
            self._quarantine = OOBTree()
        oid = job._p_oid
        self._quarantine[(database_name(job) or "", oid)] = (job, cause, stamp_now())
        log_quarantined(int.from_bytes(oid, "big"), self.name, cause)

    @property
    def quarantined(self) -> list[QuarantinedJob]:
        """The quarantined jobs, oldest first."""
        if self._quarantine is None:
            return []
        found = [
            QuarantinedJob(int.from_bytes(oid, "big"), dbname, job, cause, clock.from_stamp(when))
            for (dbname, oid), (job, cause, when) in self._quarantine.items()
        ]
        return sorted(found, key=lambda entry: entry.when)

    def _quarantine_key(self, oid: int) -> tuple[str, bytes] | None:
        if self._quarantine is None:
            return None
        wanted = oid.to_bytes(8, "big")
        return next((key for key in self._quarantine if key[1] == wanted), None)

    def discard_quarantined(self, oid: int) -> str | None:
        """Drop a quarantined job for good, without loading it; its cause, or None if absent."""
        key = self._quarantine_key(oid)
        if key is None or self._quarantine is None:
            return None
        job, cause, _when = self._quarantine.pop(key)
        if storing_problem(job) is None:  # sound after all: it leaves the queue as removed
            job._queue_key = None
            job.parent = None
        self.forget(key[1])
        return str(cause)

    def forget(self, oid: bytes) -> None:
        """A job of this queue dropped unloaded: give up its key, settle its dependants."""
        unique.release_by_oid(self, oid)
        dependencies.drop_waiting_oid(self, oid)
        dependencies.settle_dependants_of_oid(self, oid)

    def release_quarantined(self, oid: int) -> Job[Any] | None:
        """Put a quarantined job back at the front of the queue, if it is sound now.

        Returns the job, or None if no job with this id is quarantined here;
        UnloadableJobError if it still cannot be loaded or stored.
        """
        key = self._quarantine_key(oid)
        if key is None or self._quarantine is None:
            return None
        job: Job[Any] = self._quarantine[key][0]
        problem = storing_problem(job)
        if problem is not None:
            raise UnloadableJobError(f"job {oid} still cannot be run: {problem}")
        del self._quarantine[key]
        job._reset()
        job._queue_key = None
        job.parent = None
        if job.begin_after is None:
            job.begin_after = clock.utcnow()
        self.putBack(job)
        return job

    def pending_key(self, oid: int) -> QueueKey | None:
        """The lane key of the pending job with this id, found without loading any job."""
        wanted = oid.to_bytes(8, "big")
        for lanes in self._bands_in_claim_order():
            lane = lanes[lane_of(wanted, len(lanes))]
            found: QueueKey | None = next(
                (key for key in lane.keys(_FIRST_JOB) if key[3] == wanted), None
            )
            if found is not None:
                return found
        return None

    def pending_job(self, key: QueueKey) -> Job[Any] | None:
        """The pending job under a lane key (as :meth:`pending_key` gives), or None."""
        for lanes in self._bands_in_claim_order():
            found = lanes[lane_of(key[3], len(lanes))].get(key)
            if found is not None:
                return found  # type: ignore[no-any-return]
        return None

    def drop_pending(self, key: QueueKey) -> None:
        """Delete a pending job's lane entry without loading or writing the job."""
        for lanes in self._bands_in_claim_order():
            lane = lanes[lane_of(key[3], len(lanes))]
            if key in lane:
                del lane[key]
                self._length.change(-1)
                return
        raise KeyError(key)

    # -- pausing -------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether claims from this queue are stopped (see :meth:`pause`)."""
        return self._paused_at is not None

    @property
    def paused_at(self) -> datetime.datetime | None:
        """When the queue was paused (UTC); None while it runs."""
        return self._paused_at

    @property
    def pause_reason(self) -> str | None:
        """The reason given to :meth:`pause`, if any; None while it runs."""
        return self._pause_reason

    def pause(self, reason: str | None = None) -> bool:
        """Stop workers claiming from this queue; True if it ran until now.

        Joins the caller's transaction, like :meth:`put`.  Pending jobs stay
        (puts still add to them), jobs already claimed run to their end, and
        nothing more is claimed until :meth:`resume`.  It is exact: a claim
        whose transaction began before the pause committed reads the queue as
        current, so its commit conflicts and the retry sees the pause.
        Pausing a paused queue changes nothing (its time and reason stay).
        """
        if reason is not None and (
            not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable()
        ):
            raise InvalidValueError(
                f"a pause reason is a string of at most {MAX_REASON} characters, on one line, "
                f"not {short_repr(reason)}"
            )
        if self._paused_at is not None:
            return False
        self._paused_at = clock.utcnow()
        self._pause_reason = reason
        return True

    def resume(self) -> bool:
        """Let workers claim from this queue again; True if it was paused.

        Joins the caller's transaction; its commit wakes the queue's workers.
        """
        if self._paused_at is None:
            return False
        self._paused_at = None
        self._pause_reason = None
        return True

    @property
    def cancelled(self) -> CompletedCollection | None:
        """Pending jobs that were cancelled (see ``zasync.cancel``); None until the first."""
        return self._cancelled

    def file_cancelled(self, job: Job[Any]) -> None:
        """Keep a cancelled job (no longer pending) in :attr:`cancelled`, made on first use."""
        if self._cancelled is None:
            self._cancelled = CompletedCollection()
            self._cancelled.parent = self
        self._cancelled.add(job)

    def _due(
        self, items: Iterable[tuple[QueueKey, Any]], now_key: int
    ) -> Iterator[tuple[QueueKey, Any]]:
        for key, job in items:
            if key[0] == _NORMAL and key[1] > now_key:
                return  # ordered by due time: nothing later is due either
            yield key, job

    def _claim_order(
        self, share: Share | None, now_key: int, limit: int = 1, claimer: Any = None
    ) -> Iterator[tuple[QueueKey, Any]]:
        """Due ``(key, job)`` pairs in the order this claimer should try them.

        Without a share: claim order.  With one: the claimer's own lanes'
        jobs, and other lanes' jobs that it may take, each placed as if due
        ``OWN_LEAD`` later (see :mod:`zasync.model.lanes`); then the newest due
        jobs of the lanes it helps from their tail.  Other lanes' first jobs
        are looked at only among the first few, so a scan stays short when
        others own the head of the queue.
        """
        for lanes in self._bands_in_claim_order():
            yield from self._claim_order_in(lanes, share, now_key, limit, claimer)

    def _claim_order_in(
        self,
        lanes: tuple[OOBTree, ...],
        share: Share | None,
        now_key: int,
        limit: int,
        claimer: Any = None,
    ) -> Iterator[tuple[QueueKey, Any]]:
        """:meth:`_claim_order` within the lanes of one priority."""
        by_key = operator.itemgetter(0)
        if share is None:
            yield from self._due(
                heapq.merge(*(lane.items(_FIRST_JOB) for lane in lanes), key=by_key), now_key
            )
            return
        count = len(lanes)
        mine = [lane for n, lane in enumerate(lanes) if share.owns(n)]
        others = [lane for n, lane in enumerate(lanes) if not share.owns(n)]
        own = self._due(heapq.merge(*(ln.items(_FIRST_JOB) for ln in mine), key=by_key), now_key)
        foreign = self._due(
            heapq.merge(*(ln.items(_FIRST_JOB) for ln in others), key=by_key), now_key
        )
        yielded: set[int] = set()
        next_own = next(own, None)
        window = max(LANE_WINDOW, limit * count)
        for examined, (key, job) in enumerate(foreign):
            lead = (key[0], key[1] + OWN_LEAD)
            while next_own is not None and next_own[0][:2] <= lead:
                yield next_own
                next_own = next(own, None)
            if examined >= window:
                break
            # A broadcast copy for this claimer is its own, whichever lane it is in.
            mine_anyway = claimer is not None and job._target == claimer.int
            if mine_anyway or share.may_take(lane_of(key[3], count), key, job, now_key):
                yielded.add(id(job))
                yield key, job
        if next_own is not None:
            yield next_own
            yield from own
        for number, lane in enumerate(lanes):
            if not share.owns(number) and share.helps_from_tail(number, now_key):
                due = lane.items(_FIRST_JOB, (_NORMAL, now_key + 1), excludemax=True)
                # Half of what lies beyond the jobs its owner takes next: the
                # two ends then stay buckets apart, and the last few jobs of a
                # lane are its owner's.
                share_of_tail = max(0, len(due) - LANE_WINDOW) // 2
                newest_first = itertools.islice(reversed(due), share_of_tail)
                yield from ((k, j) for k, j in newest_first if id(j) not in yielded)

    def next_due_after(self, now: datetime.datetime) -> datetime.datetime | None:
        """When the first job that is not yet due at ``now`` becomes due; None if none waits.

        A dispatcher sleeps until then rather than a whole poll interval, so a
        job scheduled a little ahead (or put by a process whose clock is a
        little ahead) starts on time.
        """
        after = (_NORMAL, clock.to_stamp(now) + 1)
        dues = []
        for lane in itertools.chain.from_iterable(self._bands_in_claim_order()):
            try:
                dues.append(lane.minKey(after)[1])
            except ValueError:  # no key at or after ``after`` in this lane
                continue
        return clock.from_stamp(min(dues)) if dues else None

    def claim(
        self,
        filter: Callable[[Any], Any] | None = None,
        default: Any = None,
        lane: Lanes = None,
    ) -> Any:
        """Remove and return the first due job that quotas and ``filter`` allow; see IQueue.

        Claimers working at the same time can pass different ``lane`` numbers
        (or disjoint sets of them): each then takes its own lanes' jobs first
        instead of all racing for the first one; another lane's job comes
        first once it has been due a second longer (see :mod:`zasync.model.lanes`).
        """
        taken = self.claim_batch(1, filter, lane)
        return taken[0] if taken else default

    def claim_batch(
        self,
        limit: int,
        filter: Callable[[Any], Any] | None = None,
        lane: Lanes = None,
        careful: bool = False,
        claimer: uuid_module.UUID | None = None,
    ) -> list[Any]:
        """Claim up to ``limit`` jobs in one scan of the queue (as ``claim`` would, in turn).

        ``claimer``, the UUID of the claiming dispatcher, lets it take the
        broadcast copies put for it (see :mod:`zasync.model.broadcast`).

        A job that cannot be loaded is quarantined instead (see
        :mod:`zasync.model.quarantine`); with ``careful`` (after a claim's commit
        failed), so is a job whose state cannot be stored.

        Due is judged by :func:`zasync._dbtime.seen_now`: a job this
        transaction sees was put by a commit it sees, so its put time has
        passed whatever this process's estimate of the database's clock says.
        """
        if self._paused_at is not None:
            return []
        jar = self._p_jar
        now = clock.utcnow() if jar is None else seen_now(jar)
        cleaned: set[str] = set()
        chosen: list[tuple[Any, Any]] = []  # (queued job, job handed out)
        found_unsound: list[tuple[QueueKey, Any, Any, str]] = []
        share = as_share(lane, len(self._lanes))
        for key, job in self._claim_order(share, clock.to_stamp(now), limit, claimer):
            if len(chosen) >= limit:
                break
            bad = unsound(job, careful)
            if bad is not None:
                found_unsound.append((key, job, *bad))
                continue
            if job._queue_key != key:
                # The lane and the job disagree: this connection's copies are
                # from different moments.  Leave it; a later poll sees both anew.
                logging.getLogger("zasync.events").warning(
                    "queue %r: %r is in a lane under %r but records %r; skipped",
                    self.name,
                    job,
                    key,
                    job._queue_key,
                )
                continue
            if job._expired(now):
                candidate = self._failing_wrapper(job, now, filter, TimeoutError())
            elif job._unmet is not None:
                doomed = DependencyFailedError if job._after is not None else AbortedError
                error = doomed(f"{job!r} did not run: {job._unmet}")
                candidate = self._failing_wrapper(job, now, filter, error)
            elif job._target is not None and broadcast.target_gone(self, job):
                error = AbortedError(f"{job!r} did not run: its worker stopped before it ran")
                candidate = self._failing_wrapper(job, now, filter, error)
            elif not broadcast.admits(job, claimer):
                candidate = None  # a broadcast copy for another worker
            else:
                candidate = job if self._admits(job, filter, cleaned, now) else None
            if candidate is not None:
                chosen.append((job, candidate))
        # Removing only after the scan: the lanes must not change while iterated.
        for key, job, subject, problem in found_unsound:
            if subject is job:
                self.quarantine(job, problem, key)
            else:  # a wrapper of a method of an unsound job: that job is the one to keep
                self.drop_pending(key)
                self.quarantine(subject, f"{problem} (met through job {oid_int(job)})")
        if chosen and jar is not None:
            jar.readCurrent(self)  # a pause committed meanwhile makes this claim conflict
        touched = {id(self._lane(job)): self._lane(job) for job, _candidate in chosen}
        for job, candidate in chosen:
            self._remove(job, started=True)
            if candidate is not job:
                job.parent = candidate
                candidate.parent = None
                self._jar().add(candidate)
                logging.getLogger("zasync.events").info(
                    "%r cannot start (%s); claiming a job that fails it",
                    job,
                    "a dependency did not succeed" if job._unmet else "start deadline missed",
                )
        for lane in touched.values():
            _tidy(lane)
            if isinstance(lane, Lane):
                lane.hold_root()  # merged with a put's root, rather than a read conflict
        return [candidate for _, candidate in chosen]

    def _admits(
        self, job: Any, filter: Any, cleaned: set[str], now: datetime.datetime | None = None
    ) -> bool:
        """Quotas, rate limits and filter allow ``job``; if so, count it in them.

        A job that a rate limit counts is marked with the start time the
        limit recorded (``_v_started``), which the claim then marks it with.
        """
        quotas = [q for q in (self.quotas.get(n) for n in job.quota_names) if q is not None]
        for quota in quotas:
            if quota.name not in cleaned:
                quota.clean()
                cleaned.add(quota.name)
            if quota.filled and job not in quota:
                return False
        if filter is not None and not filter_accepts(filter, job):
            return False
        limits = self._limits_of(job)
        when = clock.utcnow() if now is None else now
        if limits:
            # One start for all its limits: the latest any of them recorded, or now.
            when = max(when, *(limit.latest() for limit in limits))
            if any(not limit.admits(when) for limit in limits):
                return False
        for quota in quotas:
            quota.add(job)
        for limit in limits:
            limit.take(when)
        if limits:
            job._v_started = when
        return True

    def _limits_of(self, job: Any) -> list[RateLimit]:
        names = job._rate_limit_names
        if not names or self._rate_limits is None:
            return []
        return [found for found in (self._rate_limits.get(n) for n in names) if found is not None]

    def _failing_wrapper(
        self, job: Any, now: datetime.datetime, filter: Any, error: BaseException
    ) -> Any:
        """A job that fails ``job`` with ``error``, if the filter takes it; else None."""
        wrapper = Job(job.fail, error)
        wrapper.begin_after = now
        wrapper.parent = self  # seen by the filter as PENDING
        wrapper.assignerUUID = get_process_uuid()
        if filter is not None and not filter_accepts(filter, wrapper):
            return None
        return wrapper

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} pending={len(self)}>"


_filter_errors_logged: set[tuple[str, str]] = set()


def filter_accepts(filter: Callable[[Any], Any], job: Any) -> bool:
    """``filter(job)``, with an error in the filter meaning "not this job".

    A filter is user code: its bug must not fail the claim of every other
    job.  The first error of each kind per filter is logged at ERROR.
    """
    try:
        return bool(filter(job))
    except (*TRANSACTION_ERRORS, *disconnect_errors()):
        raise
    except Exception as error:
        seen = (repr(filter), type(error).__name__)
        if seen not in _filter_errors_logged:
            _filter_errors_logged.add(seen)
            logging.getLogger("zasync.events").error(
                "agent filter %r raised on %r; it is taken to refuse the job "
                "(logged once per filter and error type)",
                filter,
                job,
                exc_info=True,
            )
        return False


def install_queues(connection: Any, *names: str) -> Queues:
    """Make sure ``root[KEY]`` holds a Queues mapping with the default queue and ``names``.

    Adds what is missing to ``connection`` (without committing) and returns the
    mapping.  Safe to call on every start.
    """
    root = connection.root()
    queues = root.get(KEY)
    if queues is None:
        queues = Queues()
        root[KEY] = queues
        connection.add(queues)
        zope.event.notify(ObjectAdded(queues, root, KEY))
    for name in ("", *names):
        if name not in queues:
            queue = Queue()
            queues[name] = queue
            connection.add(queue)
            zope.event.notify(ObjectAdded(queue, queues, name))
    return queues  # type: ignore[no-any-return]


def upgrade_lanes(connection: Any) -> list[str]:
    """Upgrade every queue's lanes (see :meth:`Queue.upgrade_lanes`); the queues changed.

    Does not commit.  Safe to call on every start: once done, it writes nothing.
    """
    queues = connection.root().get(KEY)
    if queues is None:
        return []
    return [name for name, queue in queues.items() if queue.upgrade_lanes()]


def upgrade_lanes_at_start(connection: Any) -> None:
    """:func:`upgrade_lanes` in commits of its own, at a worker's start.

    Best effort: if claims and puts going on keep conflicting with it, the
    queues work on with their old lanes and the next start tries again.
    """
    manager = connection.transaction_manager
    try:
        for attempt in manager.attempts(3):
            with attempt:
                changed = upgrade_lanes(connection)
    except ConflictError:
        logging.getLogger("zasync.events").warning(
            "could not upgrade the queues' lanes (conflicts); the next start tries again"
        )
        return
    if changed:
        logging.getLogger("zasync.events").info(
            "upgraded the lanes of queue(s) %s", ", ".join(map(repr, changed))
        )


def get_queues(connection: Any) -> Queues:
    """The Queues mapping of a connection's database; LookupError if not installed."""
    queues = connection.root().get(KEY)
    if queues is None:
        raise LookupError(
            f"no zasync queues in this database (root[{KEY!r}] is missing); "
            "call zasync.install_queues(connection) and commit, or start a worker once"
        )
    return queues  # type: ignore[no-any-return]


def get_queue(connection: Any, name: str = "") -> Queue:
    """The queue called ``name`` (default ``''``); LookupError naming the known queues."""
    queues = get_queues(connection)
    queue = queues.get(name)
    if queue is None:
        raise LookupError(f"no queue named {name!r}; known queues: {queues.keys()!r}")
    return queue  # type: ignore[no-any-return]
