"""A dispatcher's in-memory history: recent polls and recent job records.

Nothing here touches the database.  Both records keep a bounded number of
entries (the newest ``polls_size`` polls and ``jobs_size`` jobs); use the logs
for long-term history.  All access goes through one lock, because the poll
thread and the worker threads write while monitors read.
"""

from __future__ import annotations

import collections
import datetime
import threading
from collections.abc import Iterator
from typing import Any

from zasync import clock
from zasync._logtext import short_repr
from zasync.errors import InvalidValueError
from zasync.model.completed import dt_to_long, long_to_dt

JobId = tuple[int, str]
TRUNCATE_AT = 10_000


class PollInfo(dict[str, Any]):
    """What one poll saw: queue name -> None (refused) or {agent name -> details}."""

    key: int = 0

    @property
    def utc_timestamp(self) -> datetime.datetime:
        """When the poll ended."""
        return long_to_dt(self.key)


def new_job_record(call: str, quota_names: tuple[str, ...]) -> dict[str, Any]:
    """The record made when a job is claimed."""
    return {
        "call": call,
        "quota names": quota_names,
        "result": None,
        "failed": False,
        "poll id": None,
        "started": None,
        "completed": None,
        "thread": None,
        "reassigned": False,
        "waiting": False,
    }


def describe_result(result: Any) -> tuple[str, bool]:
    """(text, failed) for a job record; long texts are truncated."""
    from zasync.model.failure import Failure

    failed = isinstance(result, Failure)
    text = result.getTraceback() if failed else short_repr(result, TRUNCATE_AT)
    if len(text) > TRUNCATE_AT:
        text = text[:TRUNCATE_AT] + "\n[...TRUNCATED...]"
    return text, failed


def _to_key(value: int | datetime.datetime) -> int:
    return value if isinstance(value, int) else dt_to_long(value)


class Records:
    """Bounded, thread-safe poll and job records of one dispatcher."""

    def __init__(self, polls_size: int = 400, jobs_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._polls: collections.deque[PollInfo] = collections.deque(maxlen=polls_size)
        self._jobs: collections.OrderedDict[JobId, dict[str, Any]] = collections.OrderedDict()
        self._jobs_size = jobs_size
        self._polls_seen = 0  # every poll ever added, not bounded like ``_polls``

    def clear(self) -> None:
        """Forget everything (on activation)."""
        with self._lock:
            self._polls.clear()
            self._jobs.clear()
            self._polls_seen = 0

    # -- writing -----------------------------------------------------------------

    def mark_poll_start(self) -> None:
        """Called as each poll begins; records that time polls override it."""

    def add_poll(self, info: PollInfo, started: list[JobId]) -> None:
        """Record a finished poll; it takes its key from the current time."""
        key = dt_to_long(clock.utcnow()) + 15
        with self._lock:
            if self._polls and key >= self._polls[0].key:
                key = self._polls[0].key - 1  # keys must strictly decrease
            info.key = key
            self._polls.appendleft(info)
            self._polls_seen += 1
            for job_id in started:
                record = self._jobs.get(job_id)
                if record is not None:
                    record["poll id"] = key

    def add_job(self, job_id: JobId, record: dict[str, Any]) -> None:
        """Record a claimed job, forgetting the oldest beyond the size limit."""
        with self._lock:
            self._jobs[job_id] = record
            self._jobs.move_to_end(job_id)
            while len(self._jobs) > self._jobs_size:
                self._jobs.popitem(last=False)

    def update_job(self, job_id: JobId, **values: Any) -> None:
        """Change fields of a job record (ignored if it was forgotten)."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is not None:
                record.update({k.replace("_", " "): v for k, v in values.items()})

    # -- reading -----------------------------------------------------------------

    def job_info(self, oid: int, database_name: str | None = None) -> dict[str, Any]:
        """A copy of a job's record; KeyError if unknown, ValueError if ambiguous."""
        with self._lock:
            if database_name is not None:
                return dict(self._jobs[(oid, database_name)])
            matches = [r for (o, _), r in self._jobs.items() if o == oid]
        if not matches:
            raise KeyError(oid)
        if len(matches) > 1:
            raise InvalidValueError(
                f"ambiguous database name: job {oid} is in {len(matches)} databases; name one"
            )
        return dict(matches[0])

    def latest_poll(self) -> PollInfo | None:
        """The newest poll, or None."""
        with self._lock:
            return self._polls[0] if self._polls else None

    def poll_count(self) -> int:
        """How many polls were added since the last :meth:`clear`.

        Counts every poll, not just the ``polls_size`` newest that are kept,
        so waiting for "one more poll" works however long a dispatcher ran.
        """
        with self._lock:
            return self._polls_seen

    def iter_polls(
        self,
        at: int | datetime.datetime | None = None,
        before: int | datetime.datetime | None = None,
        since: int | datetime.datetime | None = None,
        count: int | None = None,
    ) -> Iterator[PollInfo]:
        """Polls from newest to oldest, starting at ``at`` or before ``before``."""
        if at is not None and before is not None:
            raise InvalidValueError("may only provide one of `at` and `before`")
        if at is not None:
            start = _to_key(at)
        elif before is not None:
            start = _to_key(before) + 1 if isinstance(before, int) else dt_to_long(before) + 16
        else:
            start = None
        # Newer polls have smaller keys: "at or before" means key >= start.
        limit = (
            None if since is None else (since if isinstance(since, int) else dt_to_long(since) + 15)
        )
        with self._lock:
            polls = list(self._polls)
        yielded = 0
        for poll in polls:
            if start is not None and poll.key < start:
                continue
            if limit is not None and poll.key > limit:
                return
            if count is not None and yielded >= count:
                return
            yielded += 1
            yield poll

    def poll_info(
        self,
        at: int | datetime.datetime | None = None,
        before: int | datetime.datetime | None = None,
    ) -> PollInfo:
        """The newest poll at or before ``at`` (or strictly before ``before``)."""
        for poll in self.iter_polls(at=at, before=before):
            return poll
        raise InvalidValueError("no poll matches: try an earlier time, or no time at all")

    def active_job_ids(self, queue: str | None = None, agent: str | None = None) -> list[JobId]:
        """Jobs listed by the latest poll that are not completed, newest poll first."""
        poll = self.latest_poll()
        if poll is None:
            return []
        ids: list[JobId] = []
        for queue_name, agents in poll.items():
            if agents is None or (queue is not None and queue_name != queue):
                continue
            for agent_name, info in agents.items():
                if agent is not None and agent_name != agent:
                    continue
                ids.extend(info["new jobs"])
                ids.extend(info["active jobs"])
        with self._lock:
            known = {i: dict(self._jobs[i]) for i in ids if i in self._jobs}
        live = [i for i in ids if i in known and known[i]["completed"] is None]
        newest = -1 << 70  # records of the current poll have no poll id yet: newest first

        def order(job_id: JobId) -> tuple[int, JobId]:
            poll_id = known[job_id]["poll id"]
            return (newest if poll_id is None else poll_id, job_id)

        live.sort(key=order)
        expired = [i for i in ids if i not in known]
        return list(dict.fromkeys(live + expired))

    def statistics(
        self,
        at: int | datetime.datetime | None = None,
        before: int | datetime.datetime | None = None,
        since: int | datetime.datetime | None = None,
        queue: str | None = None,
        agent: str | None = None,
    ) -> dict[str, Any]:
        """Counts and extremes of the jobs in a window of polls."""
        polls = list(self.iter_polls(at=at, before=before, since=since))
        stats: dict[str, Any] = {
            "started": 0,
            "successful": 0,
            "failed": 0,
            "unknown": 0,
            "statistics start": polls[-1].utc_timestamp if polls else None,
            "statistics end": polls[0].utc_timestamp if polls else None,
        }
        extremes: dict[str, list[tuple[datetime.timedelta, JobId]]] = {
            "successful": [],
            "failed": [],
            "active": [],
        }
        seen: set[JobId] = set()
        now = clock.utcnow()

        def consider(job_id: JobId, poll: PollInfo) -> None:
            if job_id in seen:
                return
            seen.add(job_id)
            with self._lock:
                record = self._jobs.get(job_id)
                record = dict(record) if record is not None else None
            if record is None:
                stats["unknown"] += 1
                return
            begun = record["started"] or poll.utc_timestamp
            ended = record["completed"] or now
            if record["completed"] is not None:
                kind = "failed" if record["failed"] else "successful"
                stats[kind] += 1
            else:
                kind = "active"
            extremes[kind].append((ended - begun, job_id))

        for index, poll in enumerate(polls):
            for queue_name, agents in poll.items():
                if agents is None or (queue is not None and queue_name != queue):
                    continue
                for agent_name, info in agents.items():
                    if agent is not None and agent_name != agent:
                        continue
                    stats["started"] += len(info["new jobs"])
                    for job_id in info["new jobs"]:
                        consider(job_id, poll)
                    if index == len(polls) - 1:
                        for job_id in info["active jobs"]:
                            consider(job_id, poll)
        for kind, values in extremes.items():
            values.sort()
            stats[f"shortest {kind}"] = values[0][1] if values else None
            stats[f"longest {kind}"] = values[-1][1] if values else None
        return stats
