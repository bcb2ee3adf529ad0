"""zasync: a durable, transactional job queue whose jobs live in a ZODB database.

``queue.put(job)`` joins the caller's transaction; a worker claims the job,
runs it and commits its database changes together with its result.
"""

from zasync.clock import set_now, utcnow
from zasync.errors import (
    AbortedError,
    AgentBusyError,
    AlreadyActivatedError,
    AlreadyRegisteredError,
    BadStatusError,
    CancelledError,
    ConfigurationError,
    DependencyFailedError,
    InvalidValueError,
    NaiveDatetimeError,
    NoCompletedJobsError,
    NoRunningJobError,
    NotActivatedError,
    NotHereError,
    NotNewError,
    NotPicklableError,
    NotQueuedBeforeError,
    NotStoredError,
    QuotaFullError,
    RetryPolicyError,
    TimeLimitError,
    TimeoutError,
    UnknownJobError,
    UnknownQuotaError,
    UnknownRetryPolicyError,
    UnloadableJobError,
    ZasyncError,
)
from zasync.identity import get_process_uuid, set_process_uuid
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    FINISHED,
    KEY,
    NEW,
    PENDING,
    STARTED,
    WAITING,
    Status,
)
from zasync.model.agent import Agent, choose_first
from zasync.model.backoff import BackoffRetryPolicy, Retry
from zasync.model.broadcast import broadcast
from zasync.model.cancellation import cancel, request_cancel
from zasync.model.completed import CompletedCollection
from zasync.model.dispatchers import DispatcherAgents, Dispatchers
from zasync.model.failure import Failure
from zasync.model.job import Job, as_job
from zasync.model.periodic import (
    Schedule,
    add_schedule,
    get_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    schedules_of,
)
from zasync.model.periodic import run_now as run_schedule_now
from zasync.model.queue import Queue, Queues, get_queue, get_queues, install_queues
from zasync.model.quota import Quota, Quotas
from zasync.model.retry import (
    NeverRetry,
    RetryCommonForever,
    RetryCommonFourTimes,
    register_retry_policy,
    set_callback_retry_policy,
    set_default_retry_policy,
)
from zasync.model.task import Task, task
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.runtime.local import local
from zasync.schema import register_old_paths
from zasync.storage.database import Database, open_database

__all__ = [
    # jobs
    "Job",
    "as_job",
    "task",
    "Task",
    "Failure",
    # statuses
    "Status",
    "NEW",
    "PENDING",
    "ASSIGNED",
    "ACTIVE",
    "CALLBACKS",
    "COMPLETED",
    "WAITING",
    "STARTED",
    "FINISHED",
    # queues and what lives in them
    "KEY",
    "Queues",
    "Queue",
    "install_queues",
    "get_queues",
    "get_queue",
    "Quota",
    "Quotas",
    "Agent",
    "choose_first",
    "CompletedCollection",
    "Dispatchers",
    "DispatcherAgents",
    # running jobs
    "Dispatcher",
    "AgentSpec",
    "local",
    # operations (see zasync.ops.queries, zasync.ops.views, zasync.ops.actions, zasync.web)
    "cancel",
    "request_cancel",
    # databases
    "open_database",
    "Database",
    # broadcast
    "broadcast",
    # periodic jobs
    "Schedule",
    "add_schedule",
    "get_schedule",
    "schedules_of",
    "pause_schedule",
    "resume_schedule",
    "remove_schedule",
    "run_schedule_now",
    # retry policies
    "Retry",
    "BackoffRetryPolicy",
    "RetryCommonFourTimes",
    "RetryCommonForever",
    "NeverRetry",
    "set_default_retry_policy",
    "set_callback_retry_policy",
    "register_retry_policy",
    # process and time
    "get_process_uuid",
    "set_process_uuid",
    "utcnow",
    "set_now",
    # errors
    "ZasyncError",
    "BadStatusError",
    "AbortedError",
    "TimeLimitError",
    "TimeoutError",
    "NotPicklableError",
    "CancelledError",
    "DependencyFailedError",
    "UnknownJobError",
    "UnknownRetryPolicyError",
    "RetryPolicyError",
    "UnloadableJobError",
    "InvalidValueError",
    "ConfigurationError",
    "NaiveDatetimeError",
    "NotNewError",
    "NotQueuedBeforeError",
    "NotHereError",
    "NotStoredError",
    "NoRunningJobError",
    "NoCompletedJobsError",
    "UnknownQuotaError",
    "QuotaFullError",
    "AlreadyRegisteredError",
    "AlreadyActivatedError",
    "NotActivatedError",
    "AgentBusyError",
]

register_old_paths()
