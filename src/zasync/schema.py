"""zasync's stored schema: every name a zasync database holds, in one place.

A ZODB record names its class by dotted path, and zasync also stores some
functions by path (the callables of the jobs it makes for itself, retry
policy factories), method names (jobs that call a method of another job),
annotation keys, status strings and the layout of its BTree keys.  Once a
version is released, a database it wrote must keep working with every later
version: each name listed here is an API that must never be removed, reused
for something else or changed in meaning.  ``tests/integration/test_schema.py`` checks
that every path below resolves, that a real workload stores no ``zasync``
global that is not listed, and that a database written by each earlier
release opens and runs (see ``docs/reference/stored-schema.md``).

This module is plain data: it imports nothing from zasync's layers, so that
anything may read it.  :func:`register_old_paths` (called when :mod:`zasync`
is imported) makes the module paths of 0.1.0.dev0 import today's modules.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

# -- the root key and the annotation keys -------------------------------------

#: Key of the Queues mapping in the ZODB root (``zasync.KEY``).
ROOT_KEY: Final = "zasync"

#: A running job's progress (``zasync.local.progress``): ``{'done', 'total',
#: 'message', 'at' (ISO time)}``, written in a separate transaction.
PROGRESS: Final = "zasync.progress"
#: A cancellation request (``zasync.cancel``): ``{'at': ISO time, 'reason': text or None}``.
CANCEL: Final = "zasync.cancel"
#: On the postprocess job of ``parallel``: how many of its jobs finished (an int).
PARALLEL_DONE: Final = "zasync.parallel.done"
#: On a job made by ``zasync retry``: the id (oid as an int) of the failed job it retries.
RETRY_OF: Final = "zasync.retry_of"
#: On a failed job that was retried: the ids of its retries (a tuple of ints).
RETRIED_AS: Final = "zasync.retried_as"
#: The attempts of a job that failed and were tried again (a retry policy's
#: reschedule, an interrupted run): a tuple, oldest first, of at most 100
#: ``(number, start, end, error)``: number 1, 2, ...; start and end in integer
#: microseconds (``zasync.clock.to_stamp``; start None if unknown); error one
#: line of at most 300 characters.
ATTEMPTS: Final = "zasync.attempts"
#: On a job a schedule put: ``(schedule name, tick time in integer microseconds)``.
SCHEDULE_TICK: Final = "zasync.schedule_tick"
#: Callbacks skipped because they could not be run: sorted ``(callback oid int, cause)``.
UNRUNNABLE_CALLBACKS: Final = "zasync.unrunnable_callbacks"

#: Every annotation key zasync writes on a job (``Job._annotations``, an OOBTree).
ANNOTATION_KEYS: Final[tuple[str, ...]] = (
    PROGRESS,
    CANCEL,
    PARALLEL_DONE,
    RETRY_OF,
    RETRIED_AS,
    UNRUNNABLE_CALLBACKS,
    ATTEMPTS,
    SCHEDULE_TICK,
)

# -- statuses -------------------------------------------------------------------

#: The values of ``zasync.Status``, with where each one lives.  ``Job._status``
#: holds only the stored ones; PENDING and ASSIGNED are derived from the job's
#: parent (a queue, an agent) and never written.
STATUSES: Final[dict[str, str]] = {
    "new": "stored: not started (also while pending or assigned)",
    "pending": "derived: the job is in a queue",
    "assigned": "derived: an agent holds the job",
    "active": "stored: claimed and running",
    "callbacks": "stored: has its result, its callbacks are running",
    "completed": "stored: finished",
}

# -- persistent classes -----------------------------------------------------------

#: Classes whose instances are database records (``persistent.Persistent``).
PERSISTENT_CLASSES: Final[dict[str, str]] = {
    "zasync.model.queue.Queues": "root[ROOT_KEY]: the named queues",
    "zasync.model.queue.Queue": "one queue: lanes, quotas, dispatchers, quarantine",
    "zasync.model.lanes.Lane": "one lane of pending jobs (an OOBTree that merges more)",
    "zasync.model.lanes.LaneBucket": "the buckets of a Lane",
    "zasync.model.quota.Quotas": "a queue's quotas by name",
    "zasync.model.quota.Quota": "one quota and the jobs counted in it",
    "zasync.model.ratelimit.RateLimits": "a queue's rate limits by name",
    "zasync.model.ratelimit.RateLimit": "one rate limit and its latest starts",
    "zasync.model.dispatchers.Dispatchers": "a queue's dispatchers by UUID",
    "zasync.model.dispatchers.DispatcherAgents": "one dispatcher's agents in a queue, its pings",
    "zasync.model.agent.Agent": "a dispatcher's claim on a queue: held and parked jobs",
    "zasync.model.completed.CompletedCollection": "an agent's completed jobs (a queue's cancelled)",
    "zasync.model.job.Job": "a job; also stored as the class of every callback and wrapper",
    "zasync.model.retry.RetryCommonFourTimes": "the default retry policy (also a factory)",
    "zasync.model.retry.RetryCommonForever": "the callbacks' retry policy (also a factory)",
    "zasync.model.retry.NeverRetry": "the retry policy that never retries (also a factory)",
    "zasync.model.backoff.BackoffRetryPolicy": "the policy of a job declared with Retry",
    "zasync.model.periodic.Schedule": "a periodic job's schedule, in Queue._schedules",
    "zasync.demo.Tally": "the demonstration's persistent tally",
}

# -- plain classes pickled inside records ---------------------------------------

#: Classes whose instances (or the classes themselves) are pickled inside records.
PICKLED_CLASSES: Final[dict[str, str]] = {
    "zasync.model.failure.Failure": "the result of a failed job",
    "zasync.model.backoff.Retry": (
        "a declared retry policy (a frozen dataclass: attempts, on, backoff, factor, "
        "max_backoff, jitter), stored as a job's retry_policy_factory and its policy's spec"
    ),
    "zasync.model.failure.UnpicklableException": "stands in for an exception that cannot be kept",
    # Exceptions that become a Failure's ``type`` and ``value``: raised by zasync
    # for a job (aborted, timed out, cancelled, policy broke, orphan result), or
    # raised by zasync calls inside a job's own code: every class of zasync.errors.
    "zasync.errors.ZasyncError": "a zasync error, raised for a job or inside one",
    "zasync.errors.BadStatusError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotNewError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotQueuedBeforeError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotHereError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotStoredError": "a zasync error, raised for a job or inside one",
    "zasync.errors.AbortedError": "a zasync error, raised for a job or inside one",
    "zasync.errors.TimeoutError": "a zasync error, raised for a job or inside one",
    "zasync.errors.TimeLimitError": "a zasync error, raised for a job or inside one",
    "zasync.errors.CancelledError": "a zasync error, raised for a job or inside one",
    "zasync.errors.DependencyFailedError": "a zasync error, raised for a job or inside one",
    "zasync.errors.UnknownJobError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotPicklableError": "a zasync error, raised for a job or inside one",
    "zasync.errors.UnknownRetryPolicyError": "a zasync error, raised for a job or inside one",
    "zasync.errors.RetryPolicyError": "a zasync error, raised for a job or inside one",
    "zasync.zope.run_as.RunAsUserError": "a job put as a user whose user or object is gone",
    "zasync.errors.UnloadableJobError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NoRunningJobError": "a zasync error, raised for a job or inside one",
    "zasync.errors.InvalidValueError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NaiveDatetimeError": "a zasync error, raised for a job or inside one",
    "zasync.errors.ConfigurationError": "a zasync error, raised for a job or inside one",
    "zasync.errors.UnknownQuotaError": "a zasync error, raised for a job or inside one",
    "zasync.errors.QuotaFullError": "a zasync error, raised for a job or inside one",
    "zasync.errors.AlreadyRegisteredError": "a zasync error, raised for a job or inside one",
    "zasync.errors.AlreadyActivatedError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NotActivatedError": "a zasync error, raised for a job or inside one",
    "zasync.errors.AgentBusyError": "a zasync error, raised for a job or inside one",
    "zasync.errors.NoCompletedJobsError": "a zasync error, raised for a job or inside one",
    # Failures written before the errors moved to zasync.errors name them here
    # (zasync.interfaces re-exports them).
    "zasync.interfaces.ZasyncError": "root of zasync's errors; a job returning an orphan job",
    "zasync.interfaces.BadStatusError": "raised inside a job's code",
    "zasync.interfaces.AbortedError": "an interrupted job whose policy gave up",
    "zasync.interfaces.TimeoutError": "a job that missed begin_by (also an argument of fail)",
    "zasync.interfaces.NotPicklableError": "raised inside a job's code (a put)",
    "zasync.interfaces.CancelledError": "a cancelled job",
    "zasync.interfaces.UnknownJobError": "raised inside a job's code",
    "zasync.interfaces.UnknownRetryPolicyError": "raised inside a job's code (a put)",
    "zasync.interfaces.RetryPolicyError": "a job whose retry policy raised",
    "zasync.interfaces.UnloadableJobError": "raised inside a job's code (a release)",
}

# -- functions (and classes) stored by path ----------------------------------------

#: Functions stored by reference: callables of jobs, factories, choosers.  The
#: retry policy classes are stored as factories too (listed above).
FUNCTIONS: Final[dict[str, str]] = {
    "zasync.model.job.success_or_failure": "callable of the wrapper that addCallbacks makes",
    "zasync.model.job.complete_started_job_arguments": "callback of that wrapper",
    "zasync.model.retry.callback_retry_policy_factory": "retry_policy_factory of callbacks",
    "zasync.model.patterns._start": "callable of the job serial()/parallel() return",
    "zasync.model.patterns._serial_step": "callback putting serial()'s next job",
    "zasync.model.patterns._parallel_step": "callback counting parallel()'s finished jobs",
    "zasync.model.patterns.collect_results": "the default postprocess of serial()/parallel()",
    "zasync.model.agent.choose_first": "the default chooser, which an Agent may store",
    "zasync.model.dependencies.dependency_done": "callback of a dependency of a waiting job",
    "zasync.model.periodic.fire": "callable of a schedule's trigger job (one per tick)",
    "zasync.model.broadcast.collect_broadcast": "callable of a broadcast's collector job",
    "zasync.zope.run_as.run_as_user": "callable of a job put with put_as_user (Zope)",
    "zasync.demo.square_sum": "the demonstration's slices",
    "zasync.demo.combine": "the demonstration's postprocess",
    "zasync.demo.record": "the demonstration's callbacks",
}

#: Names of ``Job`` methods that jobs zasync makes call (``Job._callable_name``,
#: with ``Job._callable_root`` the job itself).
METHOD_NAMES: Final[dict[str, str]] = {
    "handleInterrupt": "put by a dispatcher for an ACTIVE job of a dead one",
    "resumeCallbacks": "put by a dispatcher for a CALLBACKS job of a dead one",
    "fail": "claimed in place of a job that missed its begin_by (with a TimeoutError)",
    "_callback": "a callback that hands a job the result of the job it returned",
}

#: Names accepted as ``retry_policy_factory`` and stored as such on jobs.
RETRY_POLICY_NAMES: Final[dict[str, str]] = {
    "common": "zasync.model.retry.RetryCommonFourTimes",
    "forever": "zasync.model.retry.RetryCommonForever",
    "never": "zasync.model.retry.NeverRetry",
}

# -- key encodings -------------------------------------------------------------------

#: The layout of the keys and values zasync stores, and where the code is.
KEY_LAYOUTS: Final[dict[str, str]] = {
    "queue lanes": (
        "Queue._lanes is a tuple of Lane trees (8 for a new queue); a job's lane is "
        "its oid as a big-endian int modulo their number (zasync.model.lanes.lane_of). "
        "A key is (rank, due, database name, oid bytes): rank 0 for putBack, 1 for put; "
        "due in integer microseconds since the epoch (UTC); the key (-1, 0, '', b'') is "
        "kept first. The job stores its own key as Job._queue_key. See "
        "zasync.model.queue (QueueKey, _KEEP_FIRST, Queue._insert)."
    ),
    "schedules": (
        "Queue._schedules, None (the class default) or an OOBTree made by the first "
        "schedule: name (str) -> Schedule. Schedule: name, call (a NEW Job, the template "
        "of its jobs), cron (str or None), every (float seconds or None), timezone (IANA "
        "name), missed ('once', 'each', 'skip'), grace (float seconds), options (dict of "
        "put options), _anchor and _next (integer microseconds), _paused, _runs, "
        "_last_tick, _last_job, _trigger (the pending fire job), _last_error, _quiet "
        "(integer microseconds: ticks at or before it put nothing). See "
        "zasync.model.periodic."
    ),
    "broadcast": (
        "Job._target, None (the class default) or the UUID (as an int) of the only "
        "dispatcher that may claim this broadcast copy. See zasync.model.broadcast."
    ),
    "rate limits": (
        "Queue._rate_limits, None (the class default) or RateLimits, whose _data is an "
        "OOBTree name -> RateLimit. RateLimit: name, count (int), per (float seconds), "
        "_starts (a tuple of at most count integer microseconds, never decreasing). "
        "Job._rate_limit_names: a tuple of names, class default (). See "
        "zasync.model.ratelimit."
    ),
    "priority bands": (
        "Queue._bands, None (the class default) or an OOBTree made by the first put "
        "with a priority other than 0: priority (int, -100 to 100) -> a tuple of Lane "
        "trees as many as Queue._lanes, keyed as the queue lanes are; priority 0 uses "
        "Queue._lanes. Job._priority: the int, class default 0. See "
        "zasync.model.priority and Queue._lanes_of."
    ),
    "time limits": (
        "Job._time_limit, None (the class default) or the job's own limit in float "
        "seconds; Queue._default_timeout, None (the class default) or the limit in float "
        "seconds of its jobs put without one. See zasync.model.timelimit."
    ),
    "queue length": "Queue._length, a BTrees.Length of the pending jobs.",
    "quarantine": (
        "Queue._quarantine, an OOBTree made on first use: (database name, oid bytes) -> "
        "(job, cause text, time in microseconds). See zasync.model.quarantine."
    ),
    "queue pause": (
        "Queue._paused_at, None (the class default: a queue written before pausing "
        "existed reads as running) or the aware UTC datetime of the pause; "
        "Queue._pause_reason, None or a text of at most 200 characters. See "
        "zasync.model.queue (Queue.pause)."
    ),
    "unique keys": (
        "Queue._unique, None (the class default) or an OOBTree made by the first put "
        "with a unique_key: key (str) -> the job holding it; Job._unique, None or "
        "(key, 'started' or 'finished'): until when the job holds its key. See "
        "zasync.model.unique."
    ),
    "dependencies": (
        "Queue._waiting, None (the class default) or an OOBTree made by the first put "
        "with after=: (database name, oid bytes) -> the job waiting for others; "
        "Job._after, None or (tuple of the jobs it waits for, 'fail' or 'run'); "
        "Job._unmet, None or the text saying why it must fail without running. Each "
        "unfinished dependency has a callback calling dependency_done(job). See "
        "zasync.model.dependencies."
    ),
    "agent jobs": (
        "Agent._jobs and Agent._waiting (parked), LOBTrees: key 1, 2, ... from the "
        "counter Agent._sequence; key 0 is kept first in _jobs with the value None. "
        "See zasync.model.agent (_KEEP_FIRST, Agent._hold)."
    ),
    "completion keys": (
        "CompletedCollection._data, an LOBTree, and Job.key: the time T a job was filed "
        "as d = datetime.max (UTC) - T encoded as (d.days << 41) | (d.seconds << 24) | "
        "(d.microseconds << 4), plus 15, minus 1 per job already at that key; later "
        "times have smaller keys. See zasync.model.completed (dt_to_long, completion_key)."
    ),
    "mappings": (
        "Queues._data: name -> Queue; Quotas._data: name -> Quota; Dispatchers._data: "
        "uuid.UUID -> DispatcherAgents; DispatcherAgents._data: name -> Agent (OOBTrees)."
    ),
    "job times": (
        "Job._active_start, _active_end, _begin_after: integer microseconds since the "
        "epoch (UTC), see zasync.clock.to_stamp; Job._assigner: the UUID as an int; "
        "Job._begin_by: a datetime.timedelta."
    ),
}

# -- the reorganisation of 0.1.0 -------------------------------------------------------

#: Old module path -> new module path, for every module whose names a database may hold.
MOVED_MODULES: Final[dict[str, str]] = {
    "zasync.job": "zasync.model.job",
    "zasync.queue": "zasync.model.queue",
    "zasync.lanes": "zasync.model.lanes",
    "zasync.quota": "zasync.model.quota",
    "zasync.agent": "zasync.model.agent",
    "zasync.completed": "zasync.model.completed",
    "zasync.dispatchers": "zasync.model.dispatchers",
    "zasync.failure": "zasync.model.failure",
    "zasync.retry": "zasync.model.retry",
    "zasync.patterns": "zasync.model.patterns",
}

#: Old global name -> new one, in zodbupdate's format (``"module Name"``), for
#: every stored name of a moved module.  Published for zodbupdate through the
#: ``zodbupdate`` entry point, so that ``zodbupdate`` rewrites an old database.
RENAMES: Final[dict[str, str]] = {
    "zasync.job Job": "zasync.model.job Job",
    "zasync.job success_or_failure": "zasync.model.job success_or_failure",
    "zasync.job complete_started_job_arguments": "zasync.model.job complete_started_job_arguments",
    "zasync.queue Queues": "zasync.model.queue Queues",
    "zasync.queue Queue": "zasync.model.queue Queue",
    "zasync.lanes Lane": "zasync.model.lanes Lane",
    "zasync.lanes LaneBucket": "zasync.model.lanes LaneBucket",
    "zasync.quota Quotas": "zasync.model.quota Quotas",
    "zasync.quota Quota": "zasync.model.quota Quota",
    "zasync.agent Agent": "zasync.model.agent Agent",
    "zasync.agent choose_first": "zasync.model.agent choose_first",
    "zasync.completed CompletedCollection": "zasync.model.completed CompletedCollection",
    "zasync.dispatchers Dispatchers": "zasync.model.dispatchers Dispatchers",
    "zasync.dispatchers DispatcherAgents": "zasync.model.dispatchers DispatcherAgents",
    "zasync.failure Failure": "zasync.model.failure Failure",
    "zasync.failure UnpicklableException": "zasync.model.failure UnpicklableException",
    "zasync.retry RetryCommonFourTimes": "zasync.model.retry RetryCommonFourTimes",
    "zasync.retry RetryCommonForever": "zasync.model.retry RetryCommonForever",
    "zasync.retry NeverRetry": "zasync.model.retry NeverRetry",
    "zasync.retry callback_retry_policy_factory": (
        "zasync.model.retry callback_retry_policy_factory"
    ),
    "zasync.patterns _start": "zasync.model.patterns _start",
    "zasync.patterns _serial_step": "zasync.model.patterns _serial_step",
    "zasync.patterns _parallel_step": "zasync.model.patterns _parallel_step",
    "zasync.patterns collect_results": "zasync.model.patterns collect_results",
}


def stored_globals() -> frozenset[str]:
    """Every dotted path (``module.Name``) listed above that a record may name."""
    return frozenset({*PERSISTENT_CLASSES, *PICKLED_CLASSES, *FUNCTIONS})


def register_old_paths() -> None:
    """Make each old module path import its new module (idempotent).

    ZODB finds a stored path with ``__import__`` and ``getattr``, so an old
    path keeps loading as long as a module answers to it.  Importing
    :mod:`zasync` calls this, which covers every way of opening a database,
    ``ZODB.DB(...)`` included: importing ``zasync.job`` imports ``zasync`` first.
    """
    for old, new in MOVED_MODULES.items():
        module = sys.modules.setdefault(old, importlib.import_module(new))
        # ``import zasync.job; zasync.job.Job`` reads the package's attribute too.
        parent, _, name = old.rpartition(".")
        if not hasattr(sys.modules[parent], name):
            setattr(sys.modules[parent], name, module)
