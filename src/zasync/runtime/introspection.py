"""What a dispatcher tells about itself from memory: zc.async's introspection API.

:class:`Introspection` answers from the dispatcher's in-memory records (no
database access): its status, one job's record, the jobs running now, polls
and statistics.  Mixed into :class:`~zasync.runtime.dispatcher.Dispatcher`.
"""

from __future__ import annotations

import datetime
import uuid as uuid_module
from typing import TYPE_CHECKING, Any

from zasync import clock
from zasync.runtime.pool import AgentThreadPool
from zasync.runtime.records import JobId, PollInfo, Records


class Introspection:
    """zc.async's ``getStatusInfo``, ``getJobInfo``... (and their snake_case names)."""

    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    STUCK = "STUCK"
    STARTING = "STARTING"
    #: The poll thread died: nothing is claimed or pinged any more.
    DEAD = "DEAD"

    UUID: uuid_module.UUID
    records: Records
    activated: datetime.datetime | bool | None
    poll_interval: float
    pools: dict[tuple[str, str], AgentThreadPool]
    poll_thread_error: BaseException | None

    if TYPE_CHECKING:

        @property
        def poll_thread_died(self) -> bool: ...

    def getStatusInfo(self) -> dict[str, Any]:
        """uuid, poll interval, status, time since last poll and uptime.

        The status is STOPPED, STARTING, RUNNING, STUCK (no poll for two
        intervals) or DEAD (the poll thread ended; ``poll thread error`` says
        why).
        """
        now = clock.utcnow()
        interval = datetime.timedelta(seconds=self.poll_interval)
        info: dict[str, Any] = {
            "uuid": self.UUID,
            "poll interval": interval,
            "status": self.STOPPED,
            "time since last poll": None,
            "uptime": None,
        }
        if not isinstance(self.activated, datetime.datetime):
            return info
        info["uptime"] = now - self.activated
        if self.poll_thread_died:
            info["status"] = self.DEAD
            info["poll thread error"] = repr(self.poll_thread_error)
            return info
        poll = self.records.latest_poll()
        slack = interval  # a poll in progress is not "stuck"
        if poll is None:
            info["time since last poll"] = now - self.activated
            stuck = self.activated + interval + slack < now
            info["status"] = self.STUCK if stuck else self.STARTING
        else:
            info["time since last poll"] = now - poll.utc_timestamp
            stuck = poll.utc_timestamp + interval + slack < now
            info["status"] = self.STUCK if stuck else self.RUNNING
        return info

    def getJobInfo(self, oid: int, database_name: str | None = None) -> dict[str, Any]:
        """The record of a job this dispatcher claimed; KeyError if unknown."""
        return self.records.job_info(oid, database_name)

    def getActiveJobIds(self, queue: str | None = None, agent: str | None = None) -> list[JobId]:
        """Jobs of the latest poll not yet completed, newest first."""
        return self.records.active_job_ids(queue, agent)

    def getPollInfo(self, at: Any = None, before: Any = None) -> PollInfo:
        """The newest poll at (or strictly before) a key or time."""
        return self.records.poll_info(at, before)

    def iterPolls(
        self, at: Any = None, before: Any = None, since: Any = None, count: Any = None
    ) -> Any:
        """Polls from newest to oldest."""
        return self.records.iter_polls(at, before, since, count)

    def getStatistics(
        self,
        at: Any = None,
        before: Any = None,
        since: Any = None,
        queue: Any = None,
        agent: Any = None,
    ) -> dict[str, Any]:
        """Counts and extremes of jobs over a window of polls."""
        return self.records.statistics(at, before, since, queue, agent)

    # zc.async's names above; these are the same methods.
    get_status_info = getStatusInfo
    get_job_info = getJobInfo
    get_active_job_ids = getActiveJobIds
    get_poll_info = getPollInfo
    iter_polls = iterPolls
    get_statistics = getStatistics
