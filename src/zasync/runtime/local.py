"""``zasync.local``: what a running job can ask of the worker running it.

Inside a job run by a dispatcher's thread::

    from zasync import local

    job = local.getJob()              # the running job, in the worker's connection
    queue = local.getQueue()          # the queue it came from
    local.progress(3, 10, "parsing")  # visible at once to other processes
    local.setLiveAnnotation("note", "halfway")
    reply = local.getLiveAnnotation("reply", timeout=30)
    local.raise_if_cancelled()        # stop here if someone cancelled the job

Live annotations are written and read through a separate connection, so
other processes see them before the job commits, and the job's own
transaction is not touched.  Only store immutable values (strings, numbers,
tuples, plain dicts that are replaced rather than changed).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from zasync import clock
from zasync.errors import NoRunningJobError
from zasync.model.tx import in_fresh_connection
from zasync.schema import CANCEL, PROGRESS

_PROGRESS_MIN_INTERVAL = 0.2  # seconds between two progress commits of one job


class Local(threading.local):
    """Thread-local state of a dispatcher's worker thread, and the job-facing helpers."""

    job: Any = None
    dispatcher: Any = None
    _last_progress: float = 0.0
    _cancel_checked: tuple[Any, float] = (None, 0.0)  # (job, when) of the last check
    _cancel_seen: Any = None  # the job whose cancellation request was seen

    def getJob(self) -> Any:
        """The running job, or None outside a worker thread."""
        return self.job

    def getQueue(self) -> Any:
        """The running job's queue, or None outside a worker thread."""
        return None if self.job is None else self.job.queue

    def getDispatcher(self) -> Any:
        """The dispatcher running this thread, or None."""
        return self.dispatcher

    def _target(self, job: Any) -> tuple[Any, bytes]:
        job = job if job is not None else self.job
        if job is None or job._p_jar is None:
            raise NoRunningJobError(
                "not initialized: no running job (use inside a job run by a worker, or pass job=)"
            )
        return job._p_jar.db(), job._p_oid

    def setLiveAnnotation(self, name: str, value: Any, job: Any = None) -> None:
        """Write ``job.annotations[name] = value`` in a separate transaction.

        Committed when this returns, so other processes can read it at once.
        """
        db, oid = self._target(job)

        def write(job_there: Any) -> None:
            job_there.annotations[name] = value

        in_fresh_connection(db, oid, write, commit=True)

    def getLiveAnnotation(
        self,
        name: str,
        default: Any = None,
        timeout: float = 0,
        poll: float = 1,
        job: Any = None,
    ) -> Any:
        """Read ``job.annotations[name]`` as last committed, waiting up to ``timeout`` seconds."""
        db, oid = self._target(job)
        missing = object()
        deadline = time.monotonic() + timeout
        while True:
            value = in_fresh_connection(
                db, oid, lambda j: j.get_annotation(name, missing), commit=False
            )
            if value is not missing:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return default
            time.sleep(min(poll, remaining))

    # zc.async's names above; these are the same methods.
    get_job = getJob
    get_queue = getQueue
    get_dispatcher = getDispatcher
    live_annotation = getLiveAnnotation
    set_live_annotation = setLiveAnnotation

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Record the running job's progress where other processes can see it.

        Stored as the ``'zasync.progress'`` annotation: a dict with ``done``,
        ``total``, ``message`` and ``at`` (ISO time).  Calls closer together
        than 0.2 s are skipped, except the one that reaches ``total``.
        """
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last_progress < _PROGRESS_MIN_INTERVAL:
            return
        self._last_progress = now
        self.setLiveAnnotation(
            PROGRESS,
            {"done": done, "total": total, "message": message, "at": clock.utcnow().isoformat()},
        )

    def cancel_requested(self) -> bool:
        """True once someone asked the running job to stop (``zasync cancel``, the dashboard).

        Reads the request as last committed, through a separate connection, so
        the job sees it although its own transaction began before the request.
        Checks at most every 0.2 s (in between it answers from the last check);
        once seen, the answer stays True.  False outside a worker thread.
        """
        job = self.job
        if job is None or job._p_jar is None:
            return False
        if self._cancel_seen is job:
            return True
        now = time.monotonic()
        checked_job, checked_at = self._cancel_checked
        if checked_job is job and now - checked_at < _PROGRESS_MIN_INTERVAL:
            return False
        self._cancel_checked = (job, now)
        db, oid = self._target(None)
        seen = in_fresh_connection(
            db, oid, lambda j: j.get_annotation(CANCEL) is not None, commit=False
        )
        if seen:
            self._cancel_seen = job
        return bool(seen)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`zasync.CancelledError` if the running job was asked to stop.

        The job then fails with that error (its changes roll back, its
        callbacks run), as with any exception it raises.
        """
        if self.cancel_requested():
            from zasync.interfaces import CancelledError

            raise CancelledError("cancelled while running, as requested")


local = Local()
