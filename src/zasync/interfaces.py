"""The contract of zasync: constants, statuses, transitions and interfaces.

The interfaces are the specification. Each method's docstring says which job
statuses it accepts, what it commits and what it raises; the implementations in
the other modules stay short and point here.
"""

from __future__ import annotations

import enum

from zope.interface import Attribute, Interface

# The exceptions live in zasync.errors.  Failures stored by older versions name
# them here (``zasync.interfaces.CancelledError``): they stay importable here.
from zasync.errors import (
    AbortedError as AbortedError,
)
from zasync.errors import (
    BadStatusError as BadStatusError,
)
from zasync.errors import (
    CancelledError as CancelledError,
)
from zasync.errors import (
    NotPicklableError as NotPicklableError,
)
from zasync.errors import (
    RetryPolicyError as RetryPolicyError,
)
from zasync.errors import (
    TimeoutError as TimeoutError,
)
from zasync.errors import (
    UnknownJobError as UnknownJobError,
)
from zasync.errors import (
    UnknownRetryPolicyError as UnknownRetryPolicyError,
)
from zasync.errors import (
    UnloadableJobError as UnloadableJobError,
)
from zasync.errors import (
    ZasyncError as ZasyncError,
)
from zasync.schema import ROOT_KEY

#: Key of the :class:`zasync.model.queue.Queues` mapping in the ZODB root.
KEY = ROOT_KEY


class Status(enum.StrEnum):
    """The status of a job.

    The values are plain strings, so they compare equal to the strings stored in
    the database and print readably.
    """

    NEW = "new"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACTIVE = "active"
    CALLBACKS = "callbacks"
    COMPLETED = "completed"


NEW = Status.NEW
PENDING = Status.PENDING
ASSIGNED = Status.ASSIGNED
ACTIVE = Status.ACTIVE
CALLBACKS = Status.CALLBACKS
COMPLETED = Status.COMPLETED

#: Not started yet: the stored status is NEW; where the job sits makes it
#: PENDING (in a queue) or ASSIGNED (in an agent).
WAITING: frozenset[Status] = frozenset({NEW, PENDING, ASSIGNED})
#: Started at some point: running, running its callbacks, or done.
STARTED: frozenset[Status] = frozenset({ACTIVE, CALLBACKS, COMPLETED})
#: The job has its result (its callbacks may still be running).
FINISHED: frozenset[Status] = frozenset({CALLBACKS, COMPLETED})


# -- interfaces ---------------------------------------------------------------


class IFailure(Interface):
    """A picklable record of an exception, stored as a failed job's result."""

    type = Attribute("The exception class (or a stand-in if it cannot be imported).")
    value = Attribute("The exception instance (sanitized so that it pickles).")
    type_name = Attribute("Dotted name of the exception class, e.g. 'builtins.ValueError'.")
    stack = Attribute(
        "Frames as (name, filename, lineno, locals_items, globals_items); every value a string."
    )

    def check(*exception_types):
        """Return the first of ``exception_types`` this failure is an instance of, else None."""

    def trap(*exception_types):
        """Like ``check``, but re-raise the stored exception when nothing matches."""

    def getTraceback():
        """Return the traceback as text, in Python's usual format."""

    def raiseException():
        """Raise the stored exception."""


class IRetryPolicy(Interface):
    """Decides what happens when a job raises, fails to commit or is interrupted.

    ``jobError``, ``commitError`` and ``interrupted`` return False (do not
    retry), True (retry now, in the same worker) or a ``datetime``/``timedelta``
    (put the job back in its queue for that time; an empty timedelta means at
    the front of the queue, immediately).
    """

    def jobError(failure, data_cache):
        """The callable raised; ``failure`` describes it."""

    def commitError(failure, data_cache):
        """Committing the result failed.  Retrying reruns the whole callable."""

    def interrupted():
        """The worker running the job died while the job was ACTIVE."""

    def updateData(data_cache):
        """Store what was collected in ``data_cache``; called just before the job commits."""


class IJob(Interface):
    """A persistent call: a callable with arguments, its result and its callbacks.

    A job stores one of four statuses: NEW, ACTIVE, CALLBACKS or COMPLETED
    (``job.stored_status``).  ``job.status`` tells a stored NEW apart by where
    the job waits: PENDING in a queue, ASSIGNED in an agent, NEW elsewhere
    (see ``WAITING``).  These are all the transitions of the stored status,
    each made by one method of ``Job`` (defined with its record, in
    ``zasync.model._record``, the only module that writes
    the status and the job's times); from any other stored status, the method
    raises BadStatusError and changes nothing:

    ===========  ===========================================  =========  ======================
    from         event                                        to         method
    ===========  ===========================================  =========  ======================
    NEW          claimed by a dispatcher, or called           ACTIVE     ``_mark_active(now)``
    NEW, ACTIVE  claimed but never run, retried, rescheduled  NEW        ``_unclaim()``
    NEW, ACTIVE  result stored (returned, raised, failed)     CALLBACKS  ``_store_result(res)``
    CALLBACKS    every callback done                          COMPLETED  ``_mark_completed()``
    any          released from quarantine to run again        NEW        ``_reset()``
    ===========  ===========================================  =========  ======================

    ``_mark_active`` sets ``active_start`` and ``_unclaim`` clears it;
    ``_store_result`` sets ``active_end``.  A job without callbacks goes from
    CALLBACKS to COMPLETED in the transaction that stores its result.

    ``Job.id`` (not an attribute of this interface: it raises NotStoredError
    until the job is committed) is the decimal object id that ``zasync job``
    and the dashboard take.
    """

    parent = Attribute("The container: a queue, an agent, or a parent job (for callbacks).")
    __parent__ = Attribute("An alias of ``parent``.")
    callable = Attribute(
        "The callable. Settable only while the stored status is NEW "
        "(computed NEW, PENDING or ASSIGNED); raises BadStatusError otherwise."
    )
    args = Attribute("Positional arguments, a persistent list.")
    kwargs = Attribute("Keyword arguments, a persistent mapping.")
    status = Attribute("Computed status: NEW, PENDING, ASSIGNED, ACTIVE, CALLBACKS, COMPLETED.")
    result = Attribute("The result, a Failure for errors; None until the job has one. Read-only.")
    annotations = Attribute("An OOBTree for any code's metadata.")
    callbacks = Attribute("The callback jobs, in the order added. Do not change directly.")
    begin_after = Attribute(
        "Aware datetime (UTC) before which the job must not start. Settable while NEW, "
        "to an aware datetime or a timedelta from now."
    )
    begin_by = Attribute(
        "timedelta after begin_after by which the job must have started, or None. "
        "Settable while NEW or PENDING."
    )
    quota_names = Attribute("Tuple of quota names. Settable while NEW or PENDING.")
    queue = Attribute("The queue this job is in or came from, or None.")
    agent = Attribute("The agent holding this job, or None.")
    assignerUUID = Attribute("UUID of the process that put the job in a queue.")
    active_start = Attribute("When the job became ACTIVE. Read-only.")
    active_end = Attribute("When the job's result was stored. Read-only.")
    initial_callbacks_end = Attribute("When the job was filed as completed. Read-only.")
    failure_log_level = Attribute("Logging level for a Failure result; None means ERROR.")
    retry_policy_factory = Attribute("None, a registered name, or a callable taking the job.")

    def __call__(*args, **kwargs):
        """Run the job; the status must be NEW or ASSIGNED, else BadStatusError.

        Call-time ``args`` are appended to the stored ones and ``kwargs``
        update the stored ones; the stored values do not change.  The job
        commits: once when it becomes ACTIVE, once with its result (retrying as
        its policy says), and once when it is COMPLETED after its callbacks.
        Returns the result, the inner job or future it is waiting for, or the
        job itself if its policy rescheduled it.
        """

    stored_status = Attribute("The stored status: NEW, ACTIVE, CALLBACKS or COMPLETED.")

    def addCallback(callback, failure_log_level=None, retry_policy_factory=None):
        """Add a callback job, called with this job's result; return it.  Alias: add_callback.

        On a COMPLETED job the callback runs at once, committing transactions.
        """

    def addCallbacks(success=None, failure=None, failure_log_level=None, retry_policy_factory=None):
        """Add a wrapper that calls ``success`` or ``failure`` with the result; return it."""

    def fail(e=None):
        """Record ``Failure(e)`` (default TimeoutError) as the result and run callbacks.

        Allowed for NEW, PENDING and ASSIGNED; on CALLBACKS it only resumes
        callbacks; otherwise BadStatusError.
        """

    def handleInterrupt():
        """Ask the retry policy what to do with a job whose worker died.

        ACTIVE: reschedule, or record AbortedError.  CALLBACKS: resume callbacks.
        Otherwise BadStatusError.
        """

    def resumeCallbacks():
        """Run the callbacks not yet completed, then mark the job COMPLETED and commit.

        Requires the stored status CALLBACKS, else BadStatusError.
        """

    def getRetryPolicy():
        """Return this job's retry policy, creating and caching it on first use."""


class IQueue(Interface):
    """An ordered collection of pending jobs, claimed by agents."""

    name = Attribute("The key of this queue in its Queues mapping.")
    parent = Attribute("The Queues mapping.")
    quotas = Attribute("The Quotas mapping of this queue.")
    dispatchers = Attribute("The Dispatchers mapping of this queue.")

    def put(
        item,
        begin_after=None,
        begin_by=None,
        quota_names=None,
        failure_log_level=None,
        retry_policy_factory=None,
        retry=None,
        unique_key=None,
        unique_until=None,
    ):
        """Add a job (or a picklable callable, made a job) and return the job, now PENDING.

        ``begin_after`` is an aware datetime or a timedelta from now;
        ``retry`` is ``retry_policy_factory`` under a shorter name, which
        also takes a number of attempts.  With ``unique_key``, a put while a
        job of this queue holds that key (until it starts, or with
        ``unique_until='finished'`` until it ends) returns that job instead.  Joins
        the caller's transaction: nothing happens unless it commits.  Raises
        a ValueError (NotNewError, UnknownQuotaError, NaiveDatetimeError,
        NotPicklableError) for a job that is not NEW, unknown quota names,
        naive datetimes or an unpicklable callable or argument; a refused put
        changes nothing.
        """

    def putBack(item):
        """Return a previously claimed job to the front of the queue."""

    def pull(index=0):
        """Remove and return the job at ``index``; it becomes NEW again."""

    def remove(item):
        """Remove a given pending job; it becomes NEW again."""

    cancelled = Attribute(
        "A CompletedCollection of the pending jobs that were cancelled (they never reached "
        "an agent), kept for its retention window like an agent's completed jobs; None "
        "until the first cancellation."
    )

    def file_cancelled(job):
        """Keep a cancelled job in ``cancelled`` (its ``parent`` becomes the queue)."""

    def claim(filter=None, default=None):
        """Remove and return the first due job that quotas and ``filter`` allow, else default.

        A paused queue gives nothing.
        """

    paused = Attribute("Whether claims from this queue are stopped (see ``pause``).")
    paused_at = Attribute("When the queue was paused (an aware UTC datetime), or None.")
    pause_reason = Attribute("The reason given when it was paused, or None.")

    def pause(reason=None):
        """Stop claims from this queue in the caller's transaction; True if it was running.

        Pending jobs stay, claimed jobs run to their end; an InvalidValueError
        for a reason that is not a string of at most 200 characters on one line.
        """

    def resume():
        """Let claims from this queue go on, in the caller's transaction; True if it was paused."""

    def __len__():
        """The number of pending jobs."""

    def __iter__():
        """The pending jobs, in claim order."""


class IQuota(Interface):
    """A limit on how many jobs sharing a name may be claimed and not finished at once."""

    name = Attribute("The quota's name.")
    size = Attribute("The most jobs at once. Changeable at any time.")
    filled = Attribute("True when the quota holds ``size`` or more jobs.")

    def add(job):
        """Count a job; idempotent.  ValueError if filled or the name is not in its quota_names."""

    def clean():
        """Forget finished jobs and jobs rescheduled for later."""


class ICompletedCollection(Interface):
    """The completed jobs of an agent, newest first, kept for a retention window."""

    retention = Attribute("timedelta for which completed jobs are kept.")

    def add(job):
        """File a completed job; sets its ``key`` and ``parent``."""

    def iter(start=None, stop=None):
        """Jobs completed between ``start`` (newest) and ``stop`` (oldest)."""

    def first(start=None):
        """The newest job (at or before ``start``); ValueError when empty."""

    def last(stop=None):
        """The oldest job (at or after ``stop``); ValueError when empty."""

    def prune(now=None):
        """Remove jobs older than the retention window; return how many."""

    def clear():
        """Remove every job."""


class IAgent(Interface):
    """A dispatcher's slot collection in one queue: claims jobs and holds them while they run."""

    name = Attribute("The key of this agent in its DispatcherAgents.")
    parent = Attribute("The DispatcherAgents.")
    size = Attribute("The most jobs the agent holds at once.")
    filter = Attribute("None, or a picklable callable job -> bool choosing what to claim.")
    completed = Attribute("The ICompletedCollection of this agent.")
    queue = Attribute("The queue (parent.parent), or None.")

    def claimJob():
        """Claim one job from the queue if there is room; return it (ASSIGNED) or None."""

    def pull(index=0):
        """Remove and return the job at ``index``; its parent becomes None."""

    def remove(job):
        """Remove a given job; ValueError if it is not here."""

    def jobCompleted(job):
        """Move a COMPLETED job from the agent to its completed collection."""


class IDispatcherAgents(Interface):
    """The agents of one dispatcher (one worker process) in one queue."""

    UUID = Attribute("The dispatcher's UUID.")
    activated = Attribute("None, or when the dispatcher was activated.")
    last_ping = Attribute("A zope.minmax Maximum; ``.value`` is the last ping time.")
    ping_interval = Attribute("timedelta between pings.")
    ping_death_interval = Attribute("timedelta without a ping after which the dispatcher is dead.")
    dead = Attribute("True when the dispatcher missed its pings for the death interval.")

    def activate():
        """Mark active; ValueError if already activated."""

    def deactivate():
        """Mark inactive and hand every job of every agent back to the queue."""


class IDispatchers(Interface):
    """The dispatchers known to a queue, keyed (and sorted) by UUID."""

    def register(uuid):
        """Add a DispatcherAgents for ``uuid``; ValueError if present."""

    def unregister(uuid):
        """Remove and return it; KeyError if missing, ValueError if activated."""

    def ping(uuid):
        """Record a ping and deactivate the next activated sibling if it is dead."""


class IObjectEvent(Interface):
    """An event about an object."""

    object = Attribute("The object the event is about.")


class IDispatcherRegistered(IObjectEvent):
    """A DispatcherAgents was registered."""


class IDispatcherUnregistered(IObjectEvent):
    """A DispatcherAgents was unregistered."""


class IDispatcherActivated(IObjectEvent):
    """A DispatcherAgents was activated."""


class IDispatcherDeactivated(IObjectEvent):
    """A DispatcherAgents was deactivated."""


class IObjectAdded(IObjectEvent):
    """An object (the Queues mapping or a queue) was created and added."""

    parent = Attribute("Where it was added.")
    name = Attribute("The name under which it was added.")
