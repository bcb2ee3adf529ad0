"""Quotas: limits on how many jobs that share a name run at once.

A quota is a limit, not a priority: a job skipped because its quota is full
keeps its place in the queue.  With size 1 it serializes jobs, for example
jobs that all write one catalog index.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree
from zope.interface import implementer

from zasync import clock
from zasync.errors import ConfigurationError, InvalidValueError, QuotaFullError
from zasync.interfaces import CALLBACKS, COMPLETED, PENDING, IJob, IQuota
from zasync.model._base import Base, MappingBase, check_size
from zasync.model.quarantine import problem_of


@implementer(IQuota)
class Quota(Base):
    """Counts the claimed, unfinished jobs naming it; see IQuota."""

    def __init__(self, name: str, size: int = 1) -> None:
        self.name = name
        self._size = check_size(size, "quota")
        self._jobs: tuple[Any, ...] = ()

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = check_size(value, "quota")

    @property
    def filled(self) -> bool:
        return len(self._jobs) >= self._size

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._jobs)

    def __getitem__(self, index: int) -> Any:
        return self._jobs[index]

    def get(self, index: int, default: Any = None) -> Any:
        """The job at ``index``, or ``default``."""
        try:
            return self._jobs[index]
        except IndexError:
            return default

    def __contains__(self, job: object) -> bool:
        return any(j is job for j in self._jobs)

    def add(self, job: Any) -> None:
        """Count ``job``; see IQuota.add."""
        if job in self:
            return
        if not IJob.providedBy(job):
            raise InvalidValueError(f"a quota counts jobs: must be IJob, not {job!r}")
        if self.name not in job.quota_names:
            raise InvalidValueError(
                f"quota name must be in quota_names: {self.name!r} is not in {job.quota_names!r}",
                job=job,
            )
        if self.filled:
            raise QuotaFullError(
                f"Quota is filled: {self.name!r} holds {len(self._jobs)} of {self.size} jobs; "
                "wait for one to finish, or resize it",
                job=job,
            )
        self._jobs = (*self._jobs, job)

    def discard(self, job: Any) -> None:
        """Stop counting ``job`` (by identity, without loading it); nothing if absent."""
        if job in self:
            self._jobs = tuple(j for j in self._jobs if j is not job)

    def clean(self) -> None:
        """Forget finished jobs and jobs rescheduled for later (writes only if one is found)."""
        now = clock.utcnow()
        keep = tuple(j for j in self._jobs if not _releases_slot(j, now))
        if len(keep) != len(self._jobs):
            self._jobs = keep

    def __repr__(self) -> str:
        return f"<Quota {self.name!r} size={self._size} used={len(self._jobs)}>"


def _releases_slot(job: Any, now: Any) -> bool:
    if problem_of(job) is not None:
        return True  # it can never run; its queue quarantines it when it meets it
    status = job.status
    if status in (CALLBACKS, COMPLETED):
        return True
    return status == PENDING and job.begin_after is not None and job.begin_after > now


class Quotas(MappingBase):
    """The quotas of a queue, by name: create, read, resize, remove."""

    def __init__(self, queue: Any = None) -> None:
        self.parent = queue
        self._data = OOBTree()

    def create(self, name: str, size: int = 1) -> Quota:
        """Create a quota; ValueError if the name exists (resize it instead)."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a quota name must be a non-empty string, not {name!r}")
        if name in self._data:
            raise ConfigurationError(f"quota {name!r} already exists; change its size instead")
        quota = Quota(name, size)
        quota.parent = self
        self._data[name] = quota
        return quota

    def remove(self, name: str) -> None:
        """Delete a quota (KeyError if missing); jobs still naming it ignore it."""
        quota = self._data[name]
        del self._data[name]
        quota.parent = None
