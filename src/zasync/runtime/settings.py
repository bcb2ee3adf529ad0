"""A worker's settings from its TOML file, flags and environment, checked before anything starts.

Every setting has a type and a range (:mod:`zasync.runtime._limits`), checked with
pydantic before the worker opens its database:

* in the **TOML file** types are strict: ``poll_interval = "fast"``,
  ``threads = 2.5`` or ``serve = "yes"`` are refused (an integer is fine
  where seconds are expected), and so are unknown keys;
* **flags** and their ``ZASYNC_WORKER_*`` **environment variables** are text,
  so they are converted (``--threads 4``, ``ZASYNC_WORKER_GRACE=7.5``), then
  checked against the same ranges; they override the file;
* a refusal is a :class:`SettingsError` of one line naming where the value
  came from and the setting: ``worker.toml: agent[0].threads: must be >= 1
  (got 0)``, ``--poll-interval: must be > 0 (got '0')``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import pydantic
from pydantic import ConfigDict, Field

from zasync.errors import ConfigurationError
from zasync.interfaces import ZasyncError
from zasync.runtime._limits import (
    MAX_PREFETCH,
    Batch,
    Grace,
    Port,
    Prefetch,
    Seconds,
    Threads,
    TimeLimit,
    check_intervals,
)
from zasync.runtime.config import AgentSpec
from zasync.runtime.worker import WorkerOptions, resolve


class SettingsError(ZasyncError):
    """A worker setting of the wrong type or out of range; the message is one line."""


def _importable_callable(dotted: str | None) -> str | None:
    if dotted is None:
        return None
    try:
        target = resolve(dotted)
    except ZasyncError as e:
        raise ConfigurationError(str(e)) from None
    if not callable(target):
        raise ConfigurationError(
            f"{dotted!r} is not callable: name a function or class, as module.name"
        )
    return dotted


#: The dotted name of a callable, ``module:attribute`` or ``module.attribute``.
DottedCallable = Annotated[str | None, pydantic.AfterValidator(_importable_callable)]


class AgentSettings(pydantic.BaseModel):
    """One ``[[agent]]`` table, or the agent of ``--threads``/``--prefetch``/``--filter``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = "main"
    queue: str = ""
    threads: Threads = 4
    prefetch: Prefetch | None = None  # default: threads x max(4, batch)
    filter: DottedCallable = None
    batch: Batch = 1
    timeout: TimeLimit | None = None

    @pydantic.model_validator(mode="after")
    def _timeout_alone(self) -> AgentSettings:
        if self.timeout is not None and self.batch > 1:
            raise ConfigurationError(
                f"a batch agent (batch={self.batch}) cannot have a timeout: "
                "jobs with a time limit run alone"
            )
        return self

    @property
    def default_prefetch(self) -> int:
        """Four jobs ahead per thread, or a whole batch per thread for batch agents."""
        return min(MAX_PREFETCH, self.threads * max(4, self.batch))

    def spec(self) -> AgentSpec:
        """The AgentSpec the dispatcher installs, its filter imported."""
        return AgentSpec(
            name=self.name,
            queue=self.queue,
            threads=self.threads,
            prefetch=self.default_prefetch if self.prefetch is None else self.prefetch,
            filter=resolve(self.filter) if self.filter else None,
            batch=self.batch,
            timeout=self.timeout,
        )


class FileSettings(pydantic.BaseModel):
    """A worker's TOML file (``zasync --config`` or ``zasync worker --config``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    db: str | None = None
    poll_interval: Seconds = 5.0
    ping_interval: Seconds | None = None
    death_interval: Seconds | None = None
    grace: Grace = 30.0
    uuid: Annotated[UUID, Field(strict=False)] | None = None  # a string in TOML
    serve: bool = True
    http_port: Port | None = None
    agent: list[AgentSettings] | None = None

    @pydantic.model_validator(mode="after")
    def _intervals(self) -> FileSettings:
        check_intervals(self.poll_interval, self.ping_interval, self.death_interval)
        return self

    def options(self) -> dict[str, Any]:
        """The settings the file gives, as WorkerOptions keyword arguments."""
        given = {name: getattr(self, name) for name in self.model_fields_set if name != "agent"}
        if self.agent is not None:
            given["agents"] = [entry.spec() for entry in self.agent]
        return given


class FlagSettings(pydantic.BaseModel):
    """The worker's flags and environment variables: text, converted, then range-checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval: Seconds | None = None
    ping_interval: Seconds | None = None
    death_interval: Seconds | None = None
    grace: Grace | None = None
    uuid: UUID | None = None
    http_port: Port | None = None


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a worker TOML file; return WorkerOptions keyword arguments."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f"{os.fspath(path)}: cannot read it: {e}") from None
    try:
        return FileSettings.model_validate(data).options()
    except pydantic.ValidationError as e:
        raise SettingsError(describe(e, os.fspath(path))) from None
    except ZasyncError as e:  # a filter that cannot be imported
        raise SettingsError(f"{os.fspath(path)}: {e}") from None


def agent_from_config(
    entry: Mapping[str, Any], source: str = "agent", labels: Mapping[str, str] | None = None
) -> AgentSpec:
    """An AgentSpec from one ``[[agent]]`` table, checked like a file's.

    With ``labels`` (flags: ``{"threads": "--threads", ...}``) the entry is
    text to convert, and an error names the flag.
    """
    try:
        return AgentSettings.model_validate(dict(entry), strict=labels is None).spec()
    except pydantic.ValidationError as e:
        raise SettingsError(describe(e, source, labels)) from None


def flag_options(flags: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
    """Check flags given as ``{setting: (text, label)}``; return WorkerOptions arguments.

    ``label`` names where the value came from (``--grace``, ``$ZASYNC_WORKER_GRACE``).
    """
    values = {name: value for name, (value, _label) in flags.items()}
    try:
        checked = FlagSettings.model_validate(values)
    except pydantic.ValidationError as e:
        labels = {name: label for name, (_value, label) in flags.items()}
        raise SettingsError(describe(e, "options", labels)) from None
    return {name: getattr(checked, name) for name in values}


def worker_options(settings: Mapping[str, Any], source: str = "worker settings") -> WorkerOptions:
    """WorkerOptions from checked settings; SettingsError if they do not fit together."""
    try:
        return WorkerOptions(**settings)
    except pydantic.ValidationError as e:
        raise SettingsError(describe(e, source)) from None


def describe(
    error: pydantic.ValidationError, source: str, labels: Mapping[str, str] | None = None
) -> str:
    """The first error, on one line: ``source: agent[0].threads: must be >= 1 (got 0)``.

    ``labels`` name the flag or variable a setting came from (``threads`` ->
    ``--threads``): such a setting is named by its label alone.
    """
    errors = error.errors()
    first = errors[0]
    text = _message(first, error.title)
    if first["type"] not in ("extra_forbidden", "missing", "value_error", "assertion_error"):
        text += f" (got {first['input']!r})"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    loc = first["loc"]
    if labels and loc and loc[0] in labels:
        return f"{labels[str(loc[0])]}: {text}"
    path = _path(loc)
    return f"{source}: {path}: {text}" if path else f"{source}: {text}"


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith("function-"):  # pydantic's name for a validator step
            text += f".{part}" if text else part
    return text


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}
_KINDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "list_type": "must be a list (of [[tables]])",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dataclass_type": "must be an AgentSpec",
    "missing": "is required",
}


def _message(error: Any, model: str) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        return f"must be {symbol} {context[key]:g}"
    if kind == "extra_forbidden":
        known = _known_fields(error["loc"], model)
        return "unknown setting" + (f"; known: {', '.join(known)}" if known else "")
    if kind in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])
    return str(_KINDS.get(kind, error["msg"]))


def _known_fields(loc: tuple[int | str, ...], model: str) -> list[str]:
    models: dict[str, type[pydantic.BaseModel]] = {
        "FileSettings": FileSettings,
        "FlagSettings": FlagSettings,
        "AgentSettings": AgentSettings,
    }
    chosen = models.get(model)
    if chosen is FileSettings and loc and loc[0] == "agent":
        chosen = AgentSettings
    return sorted(chosen.model_fields) if chosen is not None else []


def parse_agent_option(text: str) -> dict[str, Any]:
    """``queue/name:threads+prefetch`` (each part optional) as a config entry."""
    entry: dict[str, Any] = {}
    where, _, sizes = text.partition(":")
    if "/" in where:
        entry["queue"], entry["name"] = where.split("/", 1)
    elif where:
        entry["name"] = where
    if sizes:
        threads, _, prefetch = sizes.partition("+")
        try:
            entry["threads"] = int(threads)
            if prefetch:
                entry["prefetch"] = int(prefetch)
        except ValueError:
            raise SettingsError(
                f"--agent {text!r}: bad agent; use queue/name:threads+prefetch"
            ) from None
    return entry


def agents_from_options(argv_agents: Sequence[str]) -> list[AgentSpec]:
    """AgentSpecs from repeated ``--agent`` options."""
    return [
        agent_from_config(parse_agent_option(text), f"--agent {text!r}", {}) for text in argv_agents
    ]
