"""Running several jobs one after another, or all at once, then combining them.

``serial(a, b, c)`` and ``parallel(a, b, c)`` return a job to put in a queue.
When a worker runs it, it puts ``a``, ``b`` and ``c`` in the same queue (one at
a time for ``serial``, all together for ``parallel``).  When they have all
finished, ``postprocess(a, b, c)`` runs as a job of its own, and its result
becomes the result of the job that ``serial``/``parallel`` returned.  The
default postprocess returns the list of the jobs' results (a Failure for a job
that failed); give your own to combine them, or to decide what a failure means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zasync.interfaces import ZasyncError
from zasync.model.job import Job, as_job
from zasync.schema import PARALLEL_DONE


def collect_results(*jobs: Any) -> list[Any]:
    """The default postprocess: the results of the jobs, in order."""
    return [job.result for job in jobs]


def serial(*jobs: Any, postprocess: Callable[..., Any] | None = None) -> Job[Any]:
    """A job that runs ``jobs`` one after another, then ``postprocess(*jobs)``."""
    return Job.bind(_start, "serial", [as_job(j) for j in jobs], postprocess or collect_results)


def parallel(*jobs: Any, postprocess: Callable[..., Any] | None = None) -> Job[Any]:
    """A job that runs ``jobs`` all at once, then ``postprocess(*jobs)`` when all are done."""
    return Job.bind(_start, "parallel", [as_job(j) for j in jobs], postprocess or collect_results)


def _start(main: Any, mode: str, jobs: list[Any], postprocess: Any) -> Any:
    queue = main.queue
    if queue is None:
        raise ZasyncError(f"{mode}() jobs must run from a queue (put the job it returns)")
    post = Job(postprocess, *jobs)
    post._v_put_later = True  # by the last step: not a job left out of every queue
    if not jobs:
        return queue.put(post)
    if mode == "serial":
        queue.put(jobs[0]).addCallback(Job(_serial_step, post, jobs, 1, queue))
    else:
        post.annotations[PARALLEL_DONE] = 0
        for job in jobs:
            queue.put(job).addCallback(Job(_parallel_step, post, len(jobs), queue))
    return post


def _serial_step(post: Any, jobs: list[Any], index: int, queue: Any, result: Any) -> None:
    if index < len(jobs):
        queue.put(jobs[index]).addCallback(Job(_serial_step, post, jobs, index + 1, queue))
    else:
        queue.put(post)


def _parallel_step(post: Any, expected: int, queue: Any, result: Any) -> None:
    # Every finishing job writes the same counter, so two finishing at once
    # conflict and one retries (callbacks retry conflicts forever): exactly
    # one of them sees the last count and puts the postprocess job.
    done = post.annotations[PARALLEL_DONE] + 1
    post.annotations[PARALLEL_DONE] = done
    if done == expected:
        queue.put(post)
