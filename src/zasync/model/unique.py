"""Unique jobs: ``queue.put(job, unique_key="invoice-42")`` adds a job only if none holds the key.

A queue keeps the keys that jobs hold in ``Queue._unique`` (an OOBTree made
on first use: key -> job).  A put with a key that a job holds returns that
job and adds nothing; otherwise the new job takes the key.  A job holds its
key

* until it **starts** (``unique_until="started"``, the default): a put while
  it runs adds a new job, which then holds the key; or
* until it **finishes** (``unique_until="finished"``): completed, failed,
  cancelled, or aborted after its worker died.

Either way a job taken out of its queue (``remove``, ``pull``, cancelled
while pending) gives its key up, and so does a quarantined job that is
discarded.  A job put back or rescheduled for a retry keeps it.

Exactness comes from the transaction: two puts of one key in two processes
both insert the key into the same BTree bucket; the second commit conflicts
(BTrees do not merge two inserts of one key), and its retry sees the first
job and returns it.  Jobs without a key never touch the tree.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from BTrees.OOBTree import OOBTree

from zasync.errors import InvalidValueError


class Job(Protocol):
    """What this module reads and writes of a job."""

    _unique: tuple[str, str] | None


#: Until when a job holds its unique key: its start (the default) or its end.
STARTED: Final = "started"
FINISHED: Final = "finished"
UNTIL = (STARTED, FINISHED)
MAX_KEY_LENGTH = 500


def check_unique(key: Any, until: Any) -> None:
    """Refuse, before anything changes, a key or an ``until`` that put cannot use."""
    if key is None:
        if until is not None:
            raise InvalidValueError("unique_until= goes with a unique_key=")
        return
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidValueError(
            f"unique_key must be a non-empty string of at most {MAX_KEY_LENGTH} "
            f"characters, not {key!r:.60}"
        )
    if until is not None and until not in UNTIL:
        raise InvalidValueError(f"unique_until must be 'started' or 'finished', not {until!r}")


def holder(queue: Any, key: str) -> Job | None:
    """The job of ``queue`` that holds ``key``, or None."""
    tree = queue._unique
    if tree is None:
        return None
    return tree.get(key)  # type: ignore[no-any-return]


def hold(queue: Any, job: Job, key: str, until: str | None) -> None:
    """Let ``job`` hold ``key`` in ``queue`` (which no job holds)."""
    if queue._unique is None:
        queue._unique = OOBTree()
    queue._unique[key] = job
    job._unique = (key, until or STARTED)


def release(job: Job, queue: Any, started: bool = False, finished: bool = False) -> None:
    """Give up ``job``'s key in ``queue`` if it holds one; ``started``: it is being claimed.

    A job that holds its key until it finishes keeps it when it starts.  A
    job that gives its key up as it starts remembers it, so that it takes it
    again if it is put back for another attempt (see :func:`retake`); so does
    a ``finished`` one, which can never be put back, so that a retry of it
    (``zasync retry``) asks for the same key.
    """
    held = job._unique
    if held is None:
        return
    key, until = held
    if started and until == FINISHED:
        return
    tree = None if queue is None else queue._unique
    if tree is not None and tree.get(key) is job:
        del tree[key]
    if not (started or finished):
        job._unique = None


def retake(queue: Any, job: Job) -> None:
    """A job going back into ``queue`` (a retry) holds its key again, unless another took it."""
    held = job._unique
    if held is None:
        return
    current = holder(queue, held[0])
    if current is job:
        return
    if current is None:
        hold(queue, job, *held)
    else:
        job._unique = None


def release_by_oid(queue: Any, oid: bytes) -> None:
    """Give up the key of the job with ``oid`` without loading it (a discarded quarantined job)."""
    tree = queue._unique
    if tree is None:
        return
    for key in [k for k, job in tree.items() if job._p_oid == oid]:
        del tree[key]
