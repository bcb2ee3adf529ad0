"""The job: a persistent call, its result, its retry policy and its callbacks.

See :class:`zasync.interfaces.IJob` for the contract.  The commit points of
:meth:`Job.__call__` are, in order: the job becomes ACTIVE (commit), the
callable runs in that same connection, the result is stored (commit, retried
as the policy says), the callbacks run (each a job committing for itself),
and the job becomes COMPLETED (commit).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import threading
import types
from typing import Any

from zope.interface import implementer

from zasync import _counters, clock
from zasync._logtext import REPR_LIMIT, RESULT_LIMIT, dotted_name, short_repr, shorten
from zasync.errors import InvalidValueError
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    AbortedError,
    BadStatusError,
    IAgent,
    IJob,
    RetryPolicyError,
    Status,
    TimeoutError,
    ZasyncError,
)
from zasync.model import _awaitables, _context, retry, unique
from zasync.model._base import identity_repr, oid_int
from zasync.model._pickling import check_storable
from zasync.model._record import JobRecord, R
from zasync.model.completed import completion_key
from zasync.model.failure import Failure
from zasync.model.quarantine import problem_of
from zasync.model.tx import TRANSACTION_ERRORS, abort_quietly, never_fail
from zasync.schema import UNRUNNABLE_CALLBACKS

events_log = logging.getLogger("zasync.events")
trace_log = logging.getLogger("zasync.trace")

_TIME_DECISIONS = (datetime.datetime, datetime.timedelta)
#: What a status-guarded unit returns when another connection moved the job on meanwhile.
MOVED_ON = object()
_MICROSECOND = datetime.timedelta(microseconds=1)
#: What an interrupted attempt's history says.
INTERRUPTED = "interrupted: its worker stopped or died before it finished"
#: How many times a retry policy that raises is asked before the job fails with its error.
POLICY_TRIES = 3


def _checked_decision(decision: Any) -> Any:
    """A retry policy's answer if it is usable; else a ValueError saying why.

    True/False (or None), a timedelta of 0 or more from now, or a datetime
    (naive means UTC) that zasync can store.  Anything else (a list, a
    string, a negative delay, a time that overflows) is a bug in the policy.
    """
    if decision is None or isinstance(decision, bool):
        return decision
    try:
        if isinstance(decision, datetime.timedelta):
            if decision < datetime.timedelta(0):
                raise InvalidValueError("a negative delay")
            clock.to_stamp(clock.utcnow() + decision)
            return decision
        if isinstance(decision, datetime.datetime):
            clock.to_stamp(clock.to_utc(decision, naive_is_utc=True))
            return decision
    except (ValueError, OverflowError, TypeError) as error:
        raise InvalidValueError(f"the policy answered {short_repr(decision)}, {error}") from None
    raise InvalidValueError(
        f"the policy answered {short_repr(decision)}; a retry policy answers True or False, "
        "a datetime or a timedelta"
    )


class PolicyBroke:
    """What :meth:`Job._getRetry` answers when the policy itself failed: fail with ``failure``."""

    __slots__ = ("failure",)

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def _render(value: Any) -> str:
    if getattr(value, "_p_jar", None) is not None or hasattr(value, "_p_oid"):
        return identity_repr(value)
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | type):
        return dotted_name(value)
    return short_repr(value)  # arguments may be large or private: log lines show a prefix


@implementer(IJob)
class Job(JobRecord[R]):
    """A call to be made later, durably: ``Job(callable, *args, **kwargs)``.

    ``Job[R]`` is the job of a callable returning ``R`` (or a coroutine
    function returning ``R``): type checkers infer it, and ``job.result`` is
    ``R``, a :class:`~zasync.Failure`, or None before the job has a result.

    zc.async's camelCase names keep working; each has a snake_case alias
    that is the same function (``add_callback is addCallback``).

    What a job holds is defined by :class:`~zasync.model._record.JobRecord`;
    this class adds how it runs: calling, storing the result as its retry
    policy says, callbacks, failing, interruptions.
    """

    _callbacks: tuple[Job[Any], ...] = ()

    @property
    def callbacks(self) -> tuple[Job[Any], ...]:
        """The callbacks added so far, in order."""
        return self._callbacks

    def addCallback(
        self,
        callback: Any,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
    ) -> Job[Any]:
        """Add a callback job, called with this job's result; see IJob."""
        job: Job[Any] = as_job(callback)
        check_storable(job)
        retry.check_retry_policy_factory(retry_policy_factory)
        _apply_callback_defaults(job, failure_log_level, retry_policy_factory)
        self._callbacks = (*self._callbacks, job)
        job.parent = self
        if self._status == COMPLETED:
            job(self._result)
        return job

    def addCallbacks(
        self,
        success: Any = None,
        failure: Any = None,
        failure_log_level: int | None = None,
        retry_policy_factory: Any = None,
    ) -> Job[Any]:
        """Add a wrapper calling ``success`` or ``failure`` with the result; see IJob."""
        if success is None and failure is None:
            return self
        retry.check_retry_policy_factory(retry_policy_factory)
        if success is not None:
            success = as_job(success)
            _apply_callback_defaults(success, failure_log_level, retry_policy_factory)
        if failure is not None:
            failure = as_job(failure)
            _apply_callback_defaults(failure, failure_log_level, retry_policy_factory)
        wrapper = Job(success_or_failure, success, failure)
        for side in (success, failure):
            if side is not None:
                side.parent = wrapper
        wrapper.addCallback(Job(complete_started_job_arguments, wrapper))
        return self.addCallback(wrapper, failure_log_level, retry_policy_factory)

    add_callback = addCallback
    add_callbacks = addCallbacks

    def user_callables(self) -> tuple[Job[Any] | None, Job[Any] | None] | None:
        """For the wrapper that ``addCallbacks`` adds: its (success, failure) jobs; else None.

        Listings show these, the user's callables, rather than the wrapper.
        """
        if self._callable_root is not success_or_failure or self._callable_name is not None:
            return None
        sides = tuple(self._args[:2])
        if len(sides) != 2:
            return None
        return sides[0], sides[1]

    # -- retry policy ----------------------------------------------------------

    def getRetryPolicy(self) -> Any:
        """Return this job's policy, making and caching it on first use."""
        if self._retry_policy is not None:
            return self._retry_policy
        factory = self.retry_policy_factory
        if factory is None:
            policy = retry.default_retry_policy_factory(self)
        elif isinstance(factory, str):
            policy = retry.named_retry_policy(factory)(self)
        else:
            policy = factory(self)
        self._retry_policy = policy
        return policy

    get_retry_policy = getRetryPolicy

    def _getRetry(self, call_name: str, tm: Any, *args: Any, commit: bool = True) -> Any:
        """Ask the job's policy ``call_name(*args)``; a :class:`PolicyBroke` if it cannot answer.

        Making the policy and calling it are user code: an error there (an
        unknown policy name, a bug) is tried :data:`POLICY_TRIES` times and
        then becomes the job's failure, instead of retrying for ever.
        """

        def policy_unless_expired() -> Any:
            # Reading the job, or its stored policy, may itself meet the
            # outage that made it fail: load both here, where that is waited out.
            if self._expired():
                return None
            policy = self.getRetryPolicy()
            activate = getattr(type(policy), "_p_activate", None)
            if activate is not None:
                activate(policy)
            return policy

        try:
            policy = never_fail(
                policy_unless_expired,
                lambda: f"getting retry policy for {self!r}",
                tm,
                limit=POLICY_TRIES,
            )
        except BaseException as error:
            if not is_outcome(error):
                raise
            return self._policy_broke(f"making the retry policy of {self!r}", error, args)
        if policy is None:
            return False
        method = getattr(policy, call_name, None)
        if method is None:
            events_log.error(
                "retry policy %r for %r does not have required %s method", policy, self, call_name
            )
            return None
        what = f"{policy!r}.{call_name}() for {self!r}"
        try:
            if not commit:
                decision = method(*args)
            else:
                decision = never_fail(
                    lambda: method(*args),
                    lambda: f"getting result for {call_name} retry for {self!r}",
                    tm,
                    limit=POLICY_TRIES,
                )
            return _checked_decision(decision)
        except BaseException as error:
            if not is_outcome(error):
                raise
            return self._policy_broke(what, error, args)

    def _policy_broke(self, what: str, error: BaseException, args: tuple[Any, ...]) -> PolicyBroke:
        about = next((f" deciding on {a}" for a in args if isinstance(a, Failure)), "")
        try:
            raise RetryPolicyError(
                f"{what} raised {type(error).__name__}{about}: {error}"
            ) from error
        except RetryPolicyError:
            failure = Failure()
        events_log.error("%s failed; the job fails:\n%s", what, failure.getTraceback())
        return PolicyBroke(failure)

    # -- calling ---------------------------------------------------------------

    def _transaction_manager(self) -> Any:
        ob: Any = self
        while ob is not None:
            jar = getattr(ob, "_p_jar", None)
            if jar is not None:
                return jar.transaction_manager
            ob = getattr(ob, "parent", None)
        raise ZasyncError(
            f"{self!r} is not stored in a database (nor is any parent); "
            "add it to a connection or a queue before calling it"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the job; see IJob.__call__ for statuses, commits and return values."""
        if self.status not in (NEW, ASSIGNED):
            raise BadStatusError("can only call a job with NEW or ASSIGNED status")
        tm = self._transaction_manager()

        def prepare() -> tuple[list[Any], dict[str, Any]] | None:
            if self.status not in (NEW, ASSIGNED):
                return None  # after a conflict: another connection started it meanwhile
            self._mark_active(clock.utcnow())
            effective_kwargs = dict(self._kwargs)
            effective_kwargs.update(kwargs)
            return [*self._args, *args], effective_kwargs

        prepared = never_fail(prepare, lambda: f"preparing for call of {self!r}", tm)
        if prepared is None:
            events_log.warning("%r was started elsewhere meanwhile; not running it here", self)
            return self
        return self._run(*prepared, tm)

    def run_claimed(self) -> Any:
        """Run a job that a dispatcher claimed and marked ACTIVE in its claim transaction.

        This is ``job()`` without the commit that makes it ACTIVE, which the
        claim already made; otherwise the same commits, retries and results.
        """
        if self._status != ACTIVE:
            raise BadStatusError("can only run a claimed job with ACTIVE status")
        return self._run(list(self._args), dict(self._kwargs), self._transaction_manager())

    def _run(
        self,
        call_args: list[Any],
        call_kwargs: dict[str, Any],
        tm: Any,
        raised: Failure | None = None,
    ) -> Any:
        """Call, store the outcome and commit, retrying as the retry policy decides.

        ``raised`` is what a first call already raised (in a batch, whose
        other jobs committed without this one's changes): the first attempt
        goes straight to deciding about that failure, as if the call had just
        raised it here.
        """
        data_cache: dict[str, Any] = {}
        first = True
        while True:
            if not first and not _context.still_ours(self):
                events_log.warning("%r was handed to another worker; not retrying it here", self)
                return self
            given, raised, first = (raised if first else None), None, False
            try:
                if given is not None:
                    raise _GivenFailure(given)
                res = _context.run_user_code(self, self.callable, call_args, call_kwargs)
            except BaseException as error:
                abort_quietly(tm)
                if not is_outcome(error):
                    raise
                res = error.failure if isinstance(error, _GivenFailure) else Failure()
                abort_quietly(tm)
                if _context.run_stopped(self):
                    return self  # failed by its worker at its time limit
                _reload(self, tm)
                if not _context.still_ours(self):
                    events_log.warning(
                        "%r was handed to another worker; not retrying it here", self
                    )
                    return self
                if res.check(*TRANSACTION_ERRORS):
                    _counters.count_conflict("job", res.value)
                decision = self._getRetry("jobError", tm, res, data_cache)
                if _context.run_stopped(self):
                    return self  # stopped while its policy decided (which may wait)
                if isinstance(decision, PolicyBroke):
                    res = decision.failure
                elif isinstance(decision, _TIME_DECISIONS):
                    if self._reschedule_committed(decision, data_cache, tm, res) is self:
                        return self
                elif decision:
                    continue
            try:
                final = self._set_result(res, tm, data_cache)
                if final and self._p_oid is not None:
                    tm.get().note(f"zasync: result of job {oid_int(self)}")
                _context.result_commit_starts(self)
                tm.commit()
                _context.result_committed(self)
            except BaseException as error:
                abort_quietly(tm)
                if not is_outcome(error):
                    raise
                commit_failure = Failure()
                abort_quietly(tm)
                if _context.run_stopped(self):
                    return self
                _reload(self, tm)
                if not _context.still_ours(self):
                    events_log.warning(
                        "%r was handed to another worker; not retrying it here", self
                    )
                    return self
                if commit_failure.check(*TRANSACTION_ERRORS):
                    _counters.count_conflict("job", commit_failure.value)
                _discard(res)
                decision = self._getRetry("commitError", tm, commit_failure, data_cache)
                if _context.run_stopped(self):
                    return self
                if isinstance(decision, PolicyBroke):
                    commit_failure = decision.failure
                elif isinstance(decision, _TIME_DECISIONS):
                    if self._reschedule_committed(decision, data_cache, tm, commit_failure) is self:
                        return self
                elif decision:
                    continue
                self._log_completion(res, commit_failed=True)
                res = commit_failure
                never_fail(
                    self._while((ACTIVE,), self._finish, commit_failure, data_cache),
                    lambda: f"storing failure at commit of {self!r}",
                    tm,
                )
                final = True
            return self._after_result_commit(res, final, tm)

    def _after_result_commit(self, res: Any, final: bool, tm: Any) -> Any:
        """What follows the commit of a call's outcome: callbacks, or waiting for a result."""
        if not final and IJob.providedBy(res) and res._p_jar is None:
            # The commit stores what stored objects refer to: a returned job
            # it left out is in no queue and referred to by nothing that
            # could ever run it, so this job would wait for ever.
            res = Failure(ZasyncError(_orphan_result_message(self, res)))
            never_fail(
                self._while((ACTIVE,), self._finish, res),
                lambda: f"failing {self!r}, which returned an orphan job",
                tm,
            )
            final = True
        if final:
            self._log_completion(res)
            self._run_callbacks(tm)
            return res
        if inspect.isawaitable(res):
            return _awaitables.submit(self, res)
        return res

    def _store_final(self, res: Any, data_cache: dict[str, Any] | None = None) -> None:
        self._store_result(res)
        if data_cache and self._retry_policy is not None:
            self._retry_policy.updateData(data_cache)

    def _finish(self, res: Any, data_cache: dict[str, Any] | None = None) -> None:
        """Store the final result; without callbacks, complete in the same transaction."""
        self._store_final(res, data_cache)
        if not self._callbacks:
            self._complete()

    def _complete(self) -> None:
        """Become COMPLETED and be filed among the agent's completed jobs (now or later)."""
        self._mark_completed()
        if self._unique is not None:
            unique.release(self, self.queue, finished=True)
        agent = self.parent
        if IJob.providedBy(agent) and agent._callable_root is self:
            # Finished by a job wrapping one of its methods (handleInterrupt
            # after a crash, fail after a missed deadline): file it where
            # that job runs, so that listings find it with its outcome.
            home = agent.agent
            if home is not None:
                home.completed.add(self)
            return
        # Held jobs are filed by their dispatcher when one runs them (to keep
        # worker commits off the shared agent); parked ones, rare, at once.
        if not IAgent.providedBy(agent):
            return
        if not _context.filing_deferred() or agent.is_parked(self):
            agent.jobCompleted(self)
        else:
            # The dispatcher files it later; the key set now spares that
            # filing commit a second write of this job.
            self.key = completion_key(clock.utcnow())

    def _while(self, statuses: tuple[Status, ...], action: Any, *args: Any) -> Any:
        """A unit for ``never_fail``: ``action(*args)`` if the job is still in one of ``statuses``.

        Checked on each attempt: after a conflict, the retry sees what other
        connections committed meanwhile (a sibling dispatcher cleaning up, a
        callback run elsewhere), and a job they moved on is left alone.
        """

        def unit() -> Any:
            return action(*args) if self.status in statuses else MOVED_ON

        return unit

    def _run_callbacks(self, tm: Any) -> None:
        """Run the callbacks (committing) if the job is not already COMPLETED."""
        if self._status == CALLBACKS:
            never_fail(
                self._while((CALLBACKS,), self.resumeCallbacks),
                lambda: f"performing callbacks of {self!r}",
                tm,
            )

    def _set_result(self, res: Any, tm: Any, data_cache: dict[str, Any] | None = None) -> bool:
        """Record ``res`` (without committing); return True if it is final."""
        if res is self:
            self._finish(Failure(ZasyncError(_orphan_result_message(self, res))))
            final = True
        elif IJob.providedBy(res):
            if res.status == NEW and not getattr(res, "_v_put_later", False):
                # stored, but in no queue: someone must call it
                events_log.warning(
                    "%r waits for %r, which is in no queue: it runs only when called", self, res
                )
            res.addCallback(self._callback)
            final = False
            if _context.run_watched(self):
                # Written in the result commit, so that it and a worker stopping
                # the job at its time limit conflict (only one of them is stored).
                self._p_changed = True
        elif inspect.isawaitable(res):
            final = False  # the caller submits it once this state is committed
            if _context.run_watched(self):
                self._p_changed = True
        else:
            self._finish(res)
            final = True
        if data_cache and self._retry_policy is not None:
            self._retry_policy.updateData(data_cache)
        return final

    def _callback(self, res: Any) -> None:
        """Receive the final result of the inner job or awaitable this job waited for."""
        tm = self._transaction_manager()
        if self._status == ACTIVE:
            never_fail(
                self._while((ACTIVE,), self._finish, res),
                lambda: f"storing result of {self!r}",
                tm,
            )
            self._log_completion(res)
        self._run_callbacks(tm)

    def _log_completion(self, res: Any, commit_failed: bool = False) -> None:
        failed = isinstance(res, Failure)
        if failed:
            level = logging.ERROR if self.failure_log_level is None else self.failure_log_level
            logger = events_log
        else:
            level = logging.INFO
            logger = events_log if commit_failed else trace_log
        if not logger.isEnabledFor(level):
            return  # reprs are costly: build nothing nobody reads
        prefix = (
            f"Commit failed for {self!r} (see subsequent traceback).  Prior to this, job"
            if commit_failed
            else f"{self!r}"
        )
        if failed:
            logger.log(
                level,
                "%s failed with traceback:\n%s",
                prefix,
                res.getTraceback(),
                extra={"zasync_job": repr(self), "zasync_outcome": "failed"},
            )
        else:
            logger.info(
                "%s succeeded with result: %s",
                prefix,
                short_repr(res, RESULT_LIMIT),
                extra={"zasync_job": repr(self), "zasync_outcome": "succeeded"},
            )

    # -- failing, interruptions, rescheduling ------------------------------------

    def fail(self, e: BaseException | None = None) -> None:
        """Record ``Failure(e)`` (default: TimeoutError) and run the callbacks; see IJob."""
        status = self.status
        if status in (COMPLETED, ACTIVE):
            raise BadStatusError(
                "can only call fail on a job with NEW, PENDING, or ASSIGNED status"
            )
        tm = self._transaction_manager()
        if status != CALLBACKS:
            failure = Failure(TimeoutError() if e is None else e)
            never_fail(
                self._while((NEW, PENDING, ASSIGNED), self._finish, failure),
                lambda: f"failing {self!r}",
                tm,
            )
            self._log_completion(failure)
        self._run_callbacks(tm)

    def handleInterrupt(self) -> None:
        """Retry, reschedule or abort a job whose worker died; see IJob."""
        tm = self._transaction_manager()
        if self._status == ACTIVE:
            # Counted in the same transaction as the rescheduling: if that
            # conflicts, the count rolls back too, and the retry counts once.
            decision = self._getRetry("interrupted", tm, commit=False)
            if isinstance(decision, PolicyBroke):
                self._abort_interrupted(tm, decision.failure)
                return
            if isinstance(decision, _TIME_DECISIONS) or decision:
                when = decision if isinstance(decision, _TIME_DECISIONS) else datetime.timedelta(0)
                queue = self.queue
                if queue is not None:
                    self._reschedule(when, queue=queue, cause=INTERRUPTED)
                    return
                events_log.critical(
                    "cannot retry interrupted %r: it has no queue; recording AbortedError", self
                )
            self._abort_interrupted(tm)
        elif self._status == CALLBACKS:
            self._run_callbacks(tm)
        else:
            raise BadStatusError("can only call ``handleInterrupt`` on a job with ACTIVE status")

    # Stored by name in databases (a job wrapping ``job.handleInterrupt``):
    # the camelCase names stay the methods; these are extra names.
    handle_interrupt = handleInterrupt

    def _abort_interrupted(self, tm: Any, failure: Failure | None = None) -> None:
        failure = Failure(AbortedError()) if failure is None else failure
        never_fail(self._while((ACTIVE,), self._finish, failure), lambda: f"aborting {self!r}", tm)
        self._log_completion(failure)
        self._run_callbacks(tm)

    def _reschedule_committed(
        self, when: Any, data_cache: dict[str, Any], tm: Any, cause: Failure
    ) -> Any:
        """Reschedule and commit; ``self`` if done (or done elsewhere meanwhile), else None."""
        done = never_fail(
            self._while((ACTIVE,), self._reschedule, when, data_cache, None, str(cause)),
            lambda: f"rescheduling {self!r} as its retry policy requested",
            tm,
        )
        return self if done is MOVED_ON else done

    def _reschedule(
        self,
        when: Any,
        data_cache: dict[str, Any] | None = None,
        queue: Any = None,
        cause: str | None = None,
    ) -> Job[Any] | None:
        """Put this job back in its queue for ``when``; ``cause`` goes into its history.

        Without a cause (a policy rescheduling a job that has not run), no
        attempt is recorded.
        """
        if not isinstance(when, _TIME_DECISIONS):
            raise TypeError("``when`` must be datetime or timedelta")
        in_agent = IAgent.providedBy(self.parent)
        if queue is None:
            if not in_agent:
                events_log.critical(
                    "error for retry policy %r on %r: "
                    "can only reschedule a job directly in an agent",
                    self._retry_policy,
                    self,
                )
                return None
            queue = self.queue
        if data_cache and self._retry_policy is not None:
            self._retry_policy.updateData(data_cache)
        if cause is not None:
            self._record_failed_attempt(cause)
        self._unclaim()
        if in_agent:
            self.parent.remove(self)
        else:
            self.parent = None
        now = clock.utcnow()
        if isinstance(when, datetime.datetime):
            when = clock.to_utc(when, naive_is_utc=True)
        else:
            when = now + when
        if when <= now:
            queue.putBack(self)
        else:
            queue.put(self, begin_after=when)
        return self

    # -- finishing ---------------------------------------------------------------

    def resumeCallbacks(self) -> None:
        """Run the callbacks not yet done, then become COMPLETED and commit; see IJob."""
        if self._status != CALLBACKS:
            raise BadStatusError("can only resumeCallbacks on a job with CALLBACKS status")
        tm = self._transaction_manager()
        unrunnable: dict[int, str] = {}
        while True:
            for callback in self._callbacks:
                problem = problem_of(callback)
                if problem is None:
                    self._resume_one(callback, tm)
                else:
                    unrunnable[int.from_bytes(callback._p_oid or b"", "big")] = problem
            tm.begin()  # sync: see callbacks other transactions added meanwhile
            if all(c._status == COMPLETED for c in self._callbacks if problem_of(c) is None):
                break
        if unrunnable:
            # Running, or even finishing, such a callback would fail for ever
            # (its code is gone, or its record is damaged): skip it, say so.
            events_log.error("%r: callbacks that cannot be run, skipped: %r", self, unrunnable)
            self.annotations[UNRUNNABLE_CALLBACKS] = sorted(unrunnable.items())
        self._complete()
        tm.commit()

    resume_callbacks = resumeCallbacks

    def _resume_one(self, callback: Job[Any], tm: Any) -> None:
        status = callback._status
        if status == NEW:
            if callback._expired():
                events_log.error("failing expired callback %r of %r", callback, self)
                callback.fail()
            else:
                trace_log.debug("starting callback %r of %r", callback, self)
                callback(self._result)
        elif status == ACTIVE:
            decision = callback._getRetry("interrupted", tm)
            if isinstance(decision, PolicyBroke):
                trace_log.debug("aborting interrupted callback %r of %r", callback, self)
                callback._abort_interrupted(tm, decision.failure)
                return
            if isinstance(decision, _TIME_DECISIONS):
                events_log.error(
                    "retry policy of %r asked to reschedule a callback; "
                    "callbacks cannot be rescheduled, only retried",
                    callback,
                )
                decision = True
            if decision:
                trace_log.debug("retrying interrupted callback %r of %r", callback, self)
                callback._unclaim()
                callback(self._result)
            else:
                trace_log.debug("aborting interrupted callback %r of %r", callback, self)
                callback._abort_interrupted(tm)
        elif status == CALLBACKS:
            callback.resumeCallbacks()

    # -- display -----------------------------------------------------------------

    def __repr__(self) -> str:
        try:
            return shorten(f"<{identity_repr(self)} ``{self._call_text()}``>", REPR_LIMIT)
        except Exception:  # unloadable (the storage is away), or odd arguments
            return f"<{identity_repr(self)}>"

    def _call_text(self) -> str:
        """``module.f(args)``; for an ``addCallbacks`` wrapper, the user's callables."""
        sides = self.user_callables()
        if sides is not None:
            success, failure = sides
            texts = [] if success is None else [success._call_text()]
            if failure is not None:
                texts.append(f"on failure {failure._call_text()}")
            return " | ".join(texts)
        call = _render(self._callable_root)
        if self._callable_name is not None:
            call += f" :{self._callable_name}"
        parts = [_render(a) for a in self.args]
        parts.extend(f"{k}={_render(v)}" for k, v in self.kwargs.items())
        return f"{call}({', '.join(parts)})"


def _reload(job: Job[Any], tm: Any) -> None:
    """Load ``job`` again after an abort, waiting out a storage that fails.

    The abort made it a ghost, and looking up even a method of a ghost loads
    it: with the database away, that load would escape the job's own error
    handling (and the worker would treat the job as interrupted).
    """
    never_fail(job._p_activate, lambda: f"reloading {job!r}", tm)


def _orphan_result_message(job: Job[Any], res: Job[Any]) -> str:
    if res is job:
        return f"{job!r} returned itself: a job cannot wait for its own result"
    return (
        f"{job!r} returned {res!r}, which no queue holds and nothing stored refers "
        "to, so nothing would ever run it: put a job in a queue (queue.put(job)) "
        "before returning it to wait for it"
    )


class _GivenFailure(Exception):
    """Carries a failure raised by an earlier call into the retry decision of ``Job._run``."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure)
        self.failure = failure


def is_outcome(error: BaseException) -> bool:
    """Whether an exception raised while running a job's code is that job's outcome.

    Everything a job raises (``SystemExit``, ``GeneratorExit`` and any other
    ``BaseException`` included) becomes its Failure, so no job can end a
    worker's thread.  The one exception is ``KeyboardInterrupt`` in the main
    thread: there it is the user pressing Ctrl-C (a job run in a script or a
    test), and it propagates.  Signals never reach a worker's job threads.
    """
    if isinstance(error, KeyboardInterrupt):
        return threading.current_thread() is not threading.main_thread()
    return True


def _discard(res: Any) -> None:
    """Close an abandoned coroutine so Python does not warn it was never awaited."""
    close = getattr(res, "close", None)
    if inspect.iscoroutine(res) and close is not None:
        close()


def _apply_callback_defaults(job: Job[Any], failure_log_level: int | None, factory: Any) -> None:
    if failure_log_level is not None:
        job.failure_log_level = failure_log_level
    elif job.failure_log_level is None:
        job.failure_log_level = logging.CRITICAL
    if factory is not None:
        job.retry_policy_factory = factory
    elif job.retry_policy_factory is None:
        job.retry_policy_factory = retry.callback_retry_policy_factory


def as_job(obj: Any) -> Job[Any]:
    """Return ``obj`` if it is a job, else ``Job(obj)`` for a callable; TypeError otherwise."""
    if IJob.providedBy(obj):
        job: Job[Any] = obj
        return job
    if callable(obj):
        return Job(obj)
    raise TypeError(f"{obj!r} is neither a job nor callable")


def success_or_failure(success: Job[Any] | None, failure: Job[Any] | None, res: Any) -> Any:
    """Call ``failure(res)`` for a Failure, else ``success(res)``; ``res`` if that side is None."""
    side = failure if isinstance(res, Failure) else success
    if side is None:
        return res
    return side(res)


def complete_started_job_arguments(wrapper: Job[Any], result: Any) -> None:
    """Finish success/failure jobs that a failed ``addCallbacks`` wrapper left half-run."""
    if not isinstance(wrapper.result, Failure):
        return
    for side in wrapper.args:
        if not IJob.providedBy(side):
            continue
        if side._status == ACTIVE:
            side._abort_interrupted(side._transaction_manager())
        elif side._status == CALLBACKS:
            side.resumeCallbacks()
