"""A Zope instance's zasync settings: ``<product-config zasync>`` and ``ZASYNC_ZOPE_*``.

In ``zope.conf``::

    <product-config zasync>
        worker on
        threads 4
        queues "" reports
        uuid-file $INSTANCE/var/zasync-uuid.txt
    </product-config>

Every key may also come from the environment (``ZASYNC_ZOPE_WORKER=on``,
``ZASYNC_ZOPE_THREADS=4``, ...: the key upper-cased, ``-`` as ``_``), which
wins over the file, so one image can run web and worker containers.  Values
are checked with pydantic before anything starts; a bad one stops the
start-up with one line naming the key and where it came from.

Keys:

``worker``
    ``on`` to run a dispatcher in this instance (default ``off``: the
    instance only puts jobs).
``threads``
    Threads of the default agent (1 to 1000, default 2).
``agents``
    Instead of ``threads``: agents as ``zasync worker --agent`` takes them,
    separated by spaces (``/main:2 reports/main:1+0``).
``queues``
    Names of the queues to install, separated by spaces (``""`` is the
    default queue, which is always installed).
``database``
    The name of the database that holds the queues, for a queue database
    mounted beside the content (default: the main database).
``uuid-file``
    Where this instance keeps its worker UUID (default
    ``<instance>/var/zasync-uuid.txt``).
``poll-interval``, ``ping-interval``, ``death-interval``, ``grace``
    Seconds, as for ``zasync worker`` (defaults 5, 30, 60 and 30).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import ConfigDict

from zasync.errors import ConfigurationError
from zasync.runtime._limits import Grace, Seconds, Threads, check_intervals
from zasync.runtime.config import AgentSpec
from zasync.runtime.settings import SettingsError, agents_from_options

#: The name of the ``<product-config>`` section.
SECTION = "zasync"
#: The prefix of the environment variables that override it.
ENVIRONMENT_PREFIX = "ZASYNC_ZOPE_"
KEYS = (
    "worker",
    "threads",
    "agents",
    "queues",
    "database",
    "uuid-file",
    "poll-interval",
    "ping-interval",
    "death-interval",
    "grace",
)


class ZopeSettings(pydantic.BaseModel):
    """The checked settings of one Zope instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: bool = False
    threads: Threads = 2
    agents: tuple[AgentSpec, ...] = ()
    queues: tuple[str, ...] = ("",)
    database: str | None = None
    uuid_file: Path | None = None
    poll_interval: Seconds = 5.0
    ping_interval: Seconds | None = None
    death_interval: Seconds | None = None
    grace: Grace = 30.0

    @pydantic.model_validator(mode="after")
    def _intervals(self) -> ZopeSettings:
        check_intervals(self.poll_interval, self.ping_interval, self.death_interval)
        return self

    def agent_specs(self) -> tuple[AgentSpec, ...]:
        """The agents to run: those given, or one of ``threads`` threads in the default queue."""
        return self.agents or (AgentSpec(threads=self.threads, prefetch=self.threads),)


def _split(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as e:  # an unbalanced quote
        raise SettingsError(f"cannot split {text!r}: {e}") from None


def _raw(product_config: Mapping[str, str] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings as given, as ``{key: (text, where)}``; unknown keys refused."""
    given: dict[str, Any] = {}
    for key, value in (product_config or {}).items():
        given[key] = (str(value), f"<product-config {SECTION}> {key}")
    for name, value in environ.items():
        if name.startswith(ENVIRONMENT_PREFIX):
            key = name[len(ENVIRONMENT_PREFIX) :].lower().replace("_", "-")
            given[key] = (value, f"${name}")
    for key, (_, where) in given.items():
        if key not in KEYS:
            raise ConfigurationError(f"{where}: unknown setting; known: {', '.join(KEYS)}")
    return given


def load(
    product_config: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_home: str | None = None,
) -> ZopeSettings:
    """The checked settings from a product-config mapping and the environment.

    Without arguments, reads Zope's configuration (``App.config``) and
    ``os.environ``.  A bad value raises ConfigurationError of one line.
    """
    if product_config is None and instance_home is None:
        product_config, instance_home = _from_zope()
    given = _raw(product_config, os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for key, (text, where) in given.items():
        name = key.replace("-", "_")
        try:
            if name == "agents":
                values[name] = tuple(agents_from_options(_split(text)))
            elif name == "queues":
                values[name] = tuple(dict.fromkeys(("", *_split(text))))
            elif name == "worker":
                values[name] = _switch(text, where)
            elif not text.strip():
                continue  # an empty value keeps the default
            else:
                values[name] = text
        except SettingsError as e:
            raise ConfigurationError(f"{where}: {e}") from None
    if "uuid_file" not in values and instance_home:
        values["uuid_file"] = Path(instance_home) / "var" / "zasync-uuid.txt"
    try:
        return ZopeSettings.model_validate(values)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        where = given.get(key.replace("_", "-"), ("", key))[1]
        raise ConfigurationError(f"{where}: {first['msg']} (got {first['input']!r})") from None


def _switch(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ConfigurationError(f"{where}: must be on or off (got {text!r})")


def _from_zope() -> tuple[dict[str, str] | None, str | None]:
    """The product-config section and the instance home of the running Zope."""
    from App.config import getConfiguration

    configuration = getConfiguration()
    sections = getattr(configuration, "product_config", None) or {}
    return sections.get(SECTION), getattr(configuration, "instancehome", None)
