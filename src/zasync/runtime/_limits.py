"""The types and ranges of the settings a worker runs with, shared by every way in.

The worker's TOML file, its flags and environment variables
(:mod:`zasync.runtime.settings`), and the Python API (:class:`~zasync.runtime.config.AgentSpec`,
:class:`~zasync.runtime.dispatcher.Dispatcher`) check the same rules, with pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from zasync.errors import ConfigurationError
from zasync.model._base import MAX_THREADS

#: The most jobs one agent may claim ahead of its threads.
MAX_PREFETCH = 10_000

#: Jobs an agent runs at once.
Threads = Annotated[int, Field(ge=1, le=MAX_THREADS)]
#: Jobs an agent claims ahead of its threads.
Prefetch = Annotated[int, Field(ge=0, le=MAX_PREFETCH)]
#: The most jobs one worker thread runs in one transaction.
MAX_BATCH = 1000
#: Jobs a worker thread runs in one transaction (1: each job commits alone).
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH)]
#: An interval in seconds (an integer or a decimal number), more than zero.
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A job's run-time limit in seconds: more than zero, at most a year and a day.
TimeLimit = Annotated[float, Field(gt=0, le=366 * 86400, allow_inf_nan=False)]
#: A grace period in seconds; zero stops running jobs at once.
Grace = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A TCP port; 0 asks for any free one.
Port = Annotated[int, Field(ge=0, le=65535)]


def check_intervals(
    poll_interval: float, ping_interval: float | None, death_interval: float | None
) -> None:
    """ValueError unless the death interval exceeds the ping and poll intervals together.

    A worker pings at its polls, so with less slack other workers would take
    a live worker for dead and recover its jobs while it runs them.  Checked
    when both the ping and death intervals are given (a worker's record keeps
    its earlier ones otherwise).
    """
    if ping_interval is None or death_interval is None:
        return
    if death_interval <= ping_interval + poll_interval:
        raise ConfigurationError(
            f"the death interval ({death_interval:g} s) must exceed the ping interval "
            f"({ping_interval:g} s) plus the poll interval ({poll_interval:g} s), "
            "or live workers will look dead"
        )
