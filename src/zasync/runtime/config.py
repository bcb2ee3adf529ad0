"""What a worker is told to run: the agents it installs in each queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from pydantic.dataclasses import dataclass

from zasync.errors import ConfigurationError
from zasync.runtime._limits import Batch, Prefetch, Threads, TimeLimit


@dataclass(frozen=True, config=pydantic.ConfigDict(strict=True))
class AgentSpec:
    """An agent that a dispatcher installs (or updates) when it activates in a queue.

    ``threads`` jobs run at once (1 to 1000); up to ``prefetch`` more (0 to
    10000) are claimed ahead, so short jobs are claimed in batches.
    ``filter`` (a picklable callable taking a job) chooses which jobs this
    agent takes.  ``batch`` (1 to 1000, default 1) lets each thread run up to
    that many claimed jobs in one transaction, an opt-in that trades some
    guarantees for fewer commits (see :mod:`zasync.model.batch`).
    ``timeout`` (seconds) is the time limit of the jobs it runs that were put
    without one of their own (see :mod:`zasync.model.timelimit`); a job
    with a limit runs alone, so a batch agent cannot have one.  Wrong
    types or ranges raise a ValueError (pydantic's ValidationError) here,
    not in a thread later.
    """

    name: str = "main"
    queue: str = ""
    threads: Threads = 3
    prefetch: Prefetch = 0
    filter: Callable[[Any], bool] | None = None
    batch: Batch = 1
    timeout: TimeLimit | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.batch > 1:
            raise ConfigurationError(
                f"agent {self.name!r}: a batch agent (batch={self.batch}) cannot have a "
                "timeout: jobs with a time limit run alone"
            )

    @property
    def size(self) -> int:
        """How many jobs the agent may hold: running plus claimed ahead."""
        return self.threads + self.prefetch
