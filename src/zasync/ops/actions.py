"""What operators do to a running system: retry, remove, cancel, resize, pause, purge.

Each function takes a ``ZODB.DB``, works in a connection and transaction
manager of its own (so it never touches the caller's transaction), retries
conflicts a few times, and returns plain data describing what it did.
Refusals raise before anything is committed: UnknownJobError for an unknown
id, BadStatusError for a job in the wrong state, LookupError for an unknown
queue, quota, dispatcher or agent, ValueError for a bad size or duration.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid as uuid_module
from typing import Any, TypeVar

from ZODB.POSException import ConflictError

from zasync import clock
from zasync.errors import InvalidValueError
from zasync.interfaces import COMPLETED, PENDING, BadStatusError, UnloadableJobError
from zasync.model import dependencies
from zasync.model._base import check_size, check_threads
from zasync.model.cancellation import cancel
from zasync.model.failure import Failure
from zasync.model.job import Job
from zasync.model.quarantine import load_error, storing_problem
from zasync.model.queue import get_queue, get_queues
from zasync.model.tx import (
    commit_in_fresh_connection,
    fresh_connection,
    read_in_fresh_connection,
)
from zasync.ops.queries import JobFilter, list_jobs, pause_state
from zasync.ops.views import find_quarantined, get_job, is_dead_letter, job_id, parse_job_id
from zasync.schema import RETRIED_AS, RETRY_OF

T = TypeVar("T")
ATTEMPTS = 5


def retry_job(db: Any, ident: str | int) -> dict[str, Any]:
    """Put a new job with the same call and options as a failed one; return both ids.

    The new job goes to the failed job's queue, annotated with
    ``zasync.retry_of``; the failed job keeps its result and lists the new
    one under ``zasync.retried_as``.  BadStatusError unless the job failed.
    """

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        old = get_job(conn, ident)
        found = find_quarantined(conn, parse_job_id(ident))
        if found is not None:  # back to the front of its queue, once its code is there
            queue, _entry = found
            queue.release_quarantined(parse_job_id(ident))
            return {"id": job_id(old), "retried": job_id(old), "queue": queue.name}
        error = load_error(old)
        if error is not None:
            raise UnloadableJobError(f"job {job_id(old)} cannot be loaded: {error}")
        if old.stored_status != COMPLETED or not isinstance(old.result, Failure):
            raise BadStatusError(
                f"job {job_id(old)} did not fail (it is {old.status}); only failed jobs are retried"
            )
        return _put_again(old)

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def _put_again(old: Job[Any]) -> dict[str, Any]:
    """Put a copy of the failed job ``old`` in its queue (in the caller's transaction)."""
    queue = old.queue
    if queue is None:
        raise BadStatusError(f"job {job_id(old)} is in no queue any more; put it again")
    new = Job(old.callable, *old.args, **dict(old.kwargs))
    options: dict[str, Any] = {"quota_names": tuple(old.quota_names)}
    if old.failure_log_level is not None:
        options["failure_log_level"] = old.failure_log_level
    if old.retry_policy_factory is not None:
        options["retry_policy_factory"] = old.retry_policy_factory
    if old.begin_by is not None:
        options["begin_by"] = old.begin_by
    if old.priority:
        options["priority"] = old.priority
    if old.timeout is not None:
        options["timeout"] = old.timeout
    if old._unique is not None:
        options["unique_key"], options["unique_until"] = old._unique
    if old._after is not None:
        after, on_failure = old._after
        # Waits again, for the latest retry of each dependency (a dependency
        # retried before it, as a bulk retry does, oldest first).
        options["after"] = [_latest_retry(old._p_jar, dependency) for dependency in after]
        options["on_dependency_failure"] = on_failure
    put = queue.put(new, begin_after=clock.utcnow(), **options)  # assigns the new job's oid
    if put is not new:  # its unique key is held: the job holding it is the retry
        old.annotations[RETRIED_AS] = (*old.get_annotation(RETRIED_AS, ()), job_id(put))
        return {"id": job_id(put), "retried": job_id(old), "queue": queue.name}
    new.annotations[RETRY_OF] = job_id(old)
    old.annotations[RETRIED_AS] = (*old.get_annotation(RETRIED_AS, ()), job_id(new))
    return {"id": job_id(new), "retried": job_id(old), "queue": queue.name}


def _latest_retry(conn: Any, job: Job[Any]) -> Job[Any]:
    """``job``, or the job it was last retried as (following retries of retries)."""
    for _ in range(100):
        retried = job.get_annotation(RETRIED_AS, ())
        if not retried:
            break
        job = get_job(conn, retried[-1])
    return job


#: Dead letters retried per transaction by :func:`retry_dead_letters`.
RETRY_CHUNK = 100


def retry_dead_letters(
    db: Any, filter: JobFilter | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Retry every dead letter ``filter`` keeps (at most ``limit``), as :func:`retry_job` does.

    The dead letters are found first, then retried :data:`RETRY_CHUNK` to a
    transaction.  A job retried meanwhile (by someone else, or by an earlier
    run that stopped half-way) is no longer a dead letter and is skipped, so
    running this twice never puts a job twice.  Returns ``retried`` (pairs
    of old and new ids), ``skipped`` (ids no longer dead letters) and
    ``unretriable`` (id -> why, for jobs whose queue is gone).
    """
    chosen = filter or JobFilter()
    if chosen.states - {"dead"}:
        raise InvalidValueError(
            "retrying dead letters takes no state but dead; filter them by queue, "
            "callable or time instead"
        )
    chosen = dataclasses.replace(chosen, states=frozenset({"dead"}))
    ids = read_in_fresh_connection(
        db, lambda conn: [row["id"] for row in list_jobs(conn, chosen, limit)]
    )
    ids.sort()  # oldest first: a dependency is retried before the jobs put after it
    retried: list[tuple[int, int]] = []
    skipped: list[int] = []
    unretriable: dict[int, str] = {}
    for start in range(0, len(ids), RETRY_CHUNK):
        chunk = ids[start : start + RETRY_CHUNK]

        def work(conn: Any, tm: Any, chunk: list[int] = chunk) -> tuple[Any, ...]:
            done: list[tuple[int, int]] = []
            passed: list[int] = []
            refused: dict[int, str] = {}
            for ident in chunk:
                old = get_job(conn, ident)
                if load_error(old) is not None or not is_dead_letter(old):
                    passed.append(ident)
                elif old.queue is None:
                    refused[ident] = "in no queue any more"
                else:
                    put = _put_again(old)
                    done.append((put["retried"], put["id"]))
            return done, passed, refused

        done, passed, refused = commit_in_fresh_connection(db, work, ATTEMPTS)
        retried.extend(done)
        skipped.extend(passed)
        unretriable.update(refused)
    return {"retried": retried, "skipped": skipped, "unretriable": unretriable}


def remove_job(db: Any, ident: str | int) -> dict[str, Any]:
    """Take a pending job out of its queue for good (it becomes NEW, in no queue).

    A quarantined job, or one whose record cannot be loaded, is dropped
    without being loaded: the way to clear a job whose code is gone.
    """

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        job = get_job(conn, ident)
        dropped = _drop_unsound(conn, job)
        if dropped is not None:
            return dropped
        if job.status != PENDING:
            raise BadStatusError(
                f"job {job_id(job)} is {job.status}; only pending jobs can be removed "
                "(cancel a running one instead)"
            )
        queue = job.parent
        queue.remove(job)
        return {"removed": job_id(job), "queue": queue.name}

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def _drop_unsound(conn: Any, job: Job[Any]) -> dict[str, Any] | None:
    """Drop a quarantined or unloadable job without loading it; None if it is sound."""
    number = job_id(job) or 0
    found = find_quarantined(conn, number)
    if found is not None:
        queue, entry = found
        queue.discard_quarantined(number)
        return {"removed": number, "queue": queue.name, "was": "quarantined", "cause": entry.cause}
    error = storing_problem(job)  # cannot be loaded, or not written back as it loads
    if error is None:
        return None
    dropped = {"removed": number, "was": "unloadable", "cause": error}
    for queue in get_queues(conn).values():
        key = queue.pending_key(number)
        held = key is not None or dependencies.drop_waiting_oid(queue, job._p_oid)
        if key is not None:
            queue.drop_pending(key)
        for da in queue.dispatchers.values():
            for agent in da.values():
                held = agent.drop(job) or held
        if held:
            queue.forget(job._p_oid)
            return {**dropped, "queue": queue.name}
    raise UnloadableJobError(
        f"job {number} cannot be run ({error}) and is not pending, held or quarantined"
    )


def cancel_job(db: Any, ident: str | int, reason: str | None = None) -> dict[str, Any]:
    """Cancel a pending job at once, or ask a running one to stop (see zasync.model.cancellation).

    A quarantined or unloadable job never ran and cannot: it is dropped.
    """
    with fresh_connection(db) as (conn, tm):
        for attempt in range(1, ATTEMPTS + 1):
            tm.begin()
            job = get_job(conn, ident)
            try:
                dropped = _drop_unsound(conn, job)
                if dropped is not None:
                    tm.commit()
                    return {"id": job_id(job), "outcome": f"dropped ({dropped['was']})"}
                what = cancel(job, reason)
            except ConflictError:
                tm.abort()
                if attempt == ATTEMPTS:
                    raise
                continue
            return {"id": job_id(job), "outcome": what}
    raise AssertionError("unreachable")  # pragma: no cover


def set_quota_size(db: Any, queue_name: str, quota_name: str, size: int) -> dict[str, Any]:
    """Change a quota's size at once; workers honour it at their next claim."""
    check_size(size, "quota")

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        quota = queue.quotas.get(quota_name)
        if quota is None:
            raise LookupError(
                f"no quota named {quota_name!r} in queue {queue_name!r}; known quotas: "
                + (", ".join(repr(k) for k in queue.quotas) or "none")
            )
        old = quota.size
        quota.size = size
        return {"queue": queue_name, "quota": quota_name, "old_size": old, "size": size}

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def set_rate_limit(db: Any, queue_name: str, name: str, count: int, per: float) -> dict[str, Any]:
    """Create a rate limit, or change its count and period; workers honour it at once."""

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        existed = name in queue.rate_limits
        limit = queue.rate_limits.set(name, count, per)
        return {"queue": queue_name, "name": name, "count": limit.count, "per": limit.per,
                "created": not existed}  # fmt: skip

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def remove_rate_limit(db: Any, queue_name: str, name: str) -> dict[str, Any]:
    """Delete a rate limit; jobs naming it are no longer limited."""

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        if name not in queue.rate_limits:
            raise LookupError(
                f"no rate limit named {name!r} in queue {queue_name!r}; known: "
                + (", ".join(repr(k) for k in queue.rate_limits) or "none")
            )
        queue.rate_limits.remove(name)
        return {"queue": queue_name, "removed": name}

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def pause_queue(db: Any, queue_name: str, reason: str | None = None) -> dict[str, Any]:
    """Stop workers claiming from a queue (see ``Queue.pause``); say whether it changed."""

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        changed = queue.pause(reason)
        return {"queue": queue_name, "changed": changed, **pause_state(queue)}

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def set_queue_timeout(db: Any, queue_name: str, seconds: float | None) -> dict[str, Any]:
    """Set (or, with None, remove) the time limit of a queue's jobs put without one."""

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        was = queue.default_timeout
        queue.default_timeout = seconds
        return {"queue": queue_name, "default_timeout": queue.default_timeout, "was": was}

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def resume_queue(db: Any, queue_name: str) -> dict[str, Any]:
    """Let workers claim from a paused queue again; say whether it changed."""

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        was = pause_state(queue)
        changed = queue.resume()
        return {
            "queue": queue_name,
            "changed": changed,
            "paused": False,
            "was_paused_at": was["paused_at"],
        }

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def set_agent_size(
    db: Any,
    queue_name: str,
    dispatcher: str,
    agent_name: str,
    size: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Change how many jobs an agent holds (``size``) and runs at once (``threads``).

    ``dispatcher`` is a UUID or an unambiguous prefix of one.  A running
    worker picks the change up at its next poll; a worker's own options
    apply again when it restarts.
    """
    if size is None and threads is None:
        raise InvalidValueError("give a size, threads, or both")
    if size is not None:
        check_size(size, "agent")
    if threads is not None:
        check_threads(threads)  # the Agent's own rule, for the CLI and the dashboard alike

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        queue = get_queue(conn, queue_name)
        da = queue.dispatchers[_find_uuid(queue, dispatcher)]
        agent = da.get(agent_name)
        if agent is None:
            raise LookupError(
                f"dispatcher {da.UUID} has no agent {agent_name!r} in queue {queue_name!r}; "
                f"its agents: {', '.join(repr(k) for k in da) or 'none'}"
            )
        old = {"size": agent.size, "threads": agent.threads}
        if size is not None:
            agent.size = size
        if threads is not None:
            agent.threads = threads
        return {
            "queue": queue_name,
            "dispatcher": str(da.UUID),
            "agent": agent_name,
            "old": old,
            "size": agent.size,
            "threads": agent.threads,
        }

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def _find_uuid(queue: Any, text: str) -> uuid_module.UUID:
    matches = [u for u in queue.dispatchers if str(u).startswith(text.lower())]
    if len(matches) == 1 and text:
        return matches[0]  # type: ignore[no-any-return]
    known = ", ".join(str(u) for u in queue.dispatchers) or "none"
    if not matches or not text:
        raise LookupError(f"no dispatcher {text!r} in queue {queue.name!r}; known: {known}")
    raise LookupError(f"{text!r} matches several dispatchers: {known}; give more of the UUID")


def _purge_targets(conn: Any, queue_name: str | None) -> dict[str, list[Any]]:
    """Per queue, the collections of finished jobs that a purge prunes."""
    queues = get_queues(conn)
    names = list(queues.keys()) if queue_name is None else [queue_name]
    targets: dict[str, list[Any]] = {}
    for name in names:
        queue = get_queue(conn, name)
        collections = [a.completed for da in queue.dispatchers.values() for a in da.values()]
        if queue.cancelled is not None:
            collections.append(queue.cancelled)
        targets[name] = collections
    return targets


def count_purgeable(
    db: Any, older_than: datetime.timedelta, queue_name: str | None = None
) -> dict[str, int]:
    """How many finished jobs, per queue, :func:`purge_completed` would forget now.

    Changes nothing; a purge that follows may forget a few more (jobs that
    became old enough in between).
    """
    if older_than < datetime.timedelta(0):
        raise InvalidValueError(f"older_than must not be negative, not {older_than}")
    with fresh_connection(db) as (conn, _tm):
        cutoff = clock.utcnow() - older_than
        return {
            name: sum(sum(1 for _ in c.iter(start=cutoff)) for c in collections)
            for name, collections in _purge_targets(conn, queue_name).items()
        }


def purge_completed(
    db: Any, older_than: datetime.timedelta, queue_name: str | None = None
) -> dict[str, Any]:
    """Forget finished jobs that completed more than ``older_than`` ago; return counts per queue."""
    if older_than < datetime.timedelta(0):
        raise InvalidValueError(f"older_than must not be negative, not {older_than}")

    def work(conn: Any, tm: Any) -> dict[str, Any]:
        now = clock.utcnow()
        purged: dict[str, int] = {}
        for name, collections in _purge_targets(conn, queue_name).items():
            total = 0
            for collection in collections:
                # prune() cuts what was filed before now - retention.
                total += collection.prune(now=now - older_than + collection.retention)
            purged[name] = total
        return {"purged": purged, "older_than": older_than.total_seconds()}

    return commit_in_fresh_connection(db, work, ATTEMPTS)
