"""The stored schema holds: listed names resolve, nothing unlisted is stored, old databases run.

``zasync.schema`` lists every name a database holds.  These tests check the
list three ways: each listed path imports (through ZODB's own lookup) to the
real object; a real workload, read back record by record, names no ``zasync``
global that is not listed; and every database written by an earlier release
(``tests/data/databases/<version>/Data.fs``, made by
``tests/data/make_old_database.py``) opens, keeps its results and runs its
pending work with today's code.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import io
import operator
import pickle
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import persistent.mapping
import pytest
import transaction
import ZODB
from ZODB.broken import Broken, find_global
from ZODB.FileStorage import FileStorage

import zasync
import zasync.testing
from zasync import (
    COMPLETED,
    PENDING,
    AgentSpec,
    CancelledError,
    Failure,
    Job,
    NeverRetry,
    schema,
)
from zasync.demo import Tally, combine, record, square_sum
from zasync.model.patterns import parallel, serial

DATABASES = Path(__file__).parents[1] / "data" / "databases"
VERSIONS = sorted(p.name for p in DATABASES.iterdir() if (p / "Data.fs").is_file())
PATIENCE = 120.0


# -- reading every record of a FileStorage -------------------------------------------


class _Stand:
    """What the scanning unpickler builds for every global: accepts any construction."""

    dotted = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stand:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _Recorder(pickle.Unpickler):
    """Records the globals a pickle names, and the classes its persistent references carry."""

    def __init__(self, data: bytes, globals_: set[str], references: set[str]) -> None:
        super().__init__(io.BytesIO(data))
        self.globals_ = globals_
        self.references = references

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        self.globals_.add(dotted)
        return type(name, (_Stand,), {"dotted": dotted})

    def persistent_load(self, pid: Any) -> Any:
        # (oid, class), ['m', (database, oid, class)], ['w', (oid,)] or a bare oid.
        for part in _flatten(pid):
            if isinstance(part, type) and issubclass(part, _Stand):
                self.references.add(part.dotted)
        return None


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, tuple | list):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def scan(path: Path, after: bytes | None = None) -> tuple[set[str], set[str]]:
    """(globals, classes in references) of every data record (after transaction ``after``)."""
    globals_: set[str] = set()
    references: set[str] = set()
    storage = FileStorage(str(path), read_only=True)
    try:
        for txn in storage.iterator():
            if after is not None and txn.tid <= after:
                continue
            for record in txn:
                if record.data is None:  # an undone creation
                    continue
                recorder = _Recorder(record.data, globals_, references)
                recorder.load()  # the class
                recorder.load()  # the state
    finally:
        storage.close()
    return globals_, references


def last_tid(path: Path) -> bytes:
    storage = FileStorage(str(path), read_only=True)
    try:
        return bytes(storage.lastTransaction())
    finally:
        storage.close()


def unlisted(paths: set[str]) -> set[str]:
    """The zasync globals among ``paths`` that zasync.schema does not list."""
    ours = {p for p in paths if p.split(".", 1)[0] == "zasync"}
    return ours - schema.stored_globals()


# -- the lists ------------------------------------------------------------------------


def _resolve(dotted: str) -> Any:
    module, name = dotted.rsplit(".", 1)
    return find_global(module, name)


def _real(dotted: str) -> Any:
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _is_broken(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Broken)


@pytest.mark.parametrize("dotted", sorted(schema.stored_globals()))
def test_every_listed_path_loads_the_real_object(dotted):
    found = _resolve(dotted)
    assert not _is_broken(found)
    assert found is _real(dotted)
    assert callable(found)


@pytest.mark.parametrize("old", sorted(schema.RENAMES))
def test_every_rename_target_is_the_object_of_its_old_path(old):
    new = schema.RENAMES[old]
    old_module, old_name = old.split(" ")
    new_module, new_name = new.split(" ")
    assert old_module in schema.MOVED_MODULES
    assert schema.MOVED_MODULES[old_module] == new_module
    assert f"{new_module}.{new_name}" in schema.stored_globals()
    before, after = find_global(old_module, old_name), find_global(new_module, new_name)
    assert not _is_broken(before) and not _is_broken(after)
    assert before is after


def test_every_listed_name_of_a_moved_module_has_a_rename():
    moved_to = {new: old for old, new in schema.MOVED_MODULES.items()}
    expected = {
        f"{moved_to[module]} {name}": f"{module} {name}"
        for module, name in (p.rsplit(".", 1) for p in schema.stored_globals())
        if module in moved_to
    }
    assert expected == schema.RENAMES
    assert {old.split(" ")[0] for old in schema.RENAMES} == set(schema.MOVED_MODULES)


def test_zodbupdate_finds_the_renames_through_its_entry_point():
    (entry,) = importlib.metadata.entry_points(group="zodbupdate", name="renames")
    assert entry.value == "zasync.schema:RENAMES"
    assert entry.load() is schema.RENAMES


def test_old_module_paths_are_today_s_modules():
    schema.register_old_paths()
    for old, new in schema.MOVED_MODULES.items():
        assert sys.modules[old] is importlib.import_module(new)
        # ``import zasync.job; zasync.job.Job``: the package answers to the old name too.
        package, _, name = old.rpartition(".")
        assert getattr(sys.modules[package], name) is sys.modules[old]


def test_the_code_uses_the_listed_constants():
    from zasync import interfaces
    from zasync.cli.put import PROGRESS as cli_progress
    from zasync.model import cancellation, job, patterns
    from zasync.ops import views
    from zasync.runtime import local

    assert interfaces.KEY == schema.ROOT_KEY == zasync.KEY
    assert local.PROGRESS is schema.PROGRESS and cli_progress is schema.PROGRESS
    assert views.PROGRESS is schema.PROGRESS
    assert cancellation.CANCEL is schema.CANCEL and views.CANCEL is schema.CANCEL
    assert patterns.PARALLEL_DONE is schema.PARALLEL_DONE
    assert views.RETRY_OF is schema.RETRY_OF and views.RETRIED_AS is schema.RETRIED_AS
    assert job.UNRUNNABLE_CALLBACKS is schema.UNRUNNABLE_CALLBACKS
    assert list(schema.STATUSES) == [status.value for status in zasync.Status]
    for name, path in schema.RETRY_POLICY_NAMES.items():
        assert zasync.model.retry.named_retry_policy(name) is _real(path)
    for method in schema.METHOD_NAMES:
        assert callable(getattr(Job, method))


# -- a real workload stores only listed names -------------------------------------------


def _module_that_goes(where: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """An importable module whose file the test deletes before a worker runs its job."""
    name = f"schema_gone_{uuid.uuid4().hex}"
    folder = where / "modules"
    folder.mkdir()
    source = folder / f"{name}.py"
    source.write_text("def work():\n    return 1\n")
    monkeypatch.syspath_prepend(str(folder))
    return importlib.import_module(name), source


def _forget(module: Any, source: Path) -> None:
    source.unlink()
    del sys.modules[module.__name__]
    importlib.invalidate_caches()


def _all_completed(jobs: list[Any]) -> bool:
    return all(job.status == COMPLETED for job in jobs)


def _stored_objects(path: Path) -> Iterator[Any]:
    """Every object stored in the file, loaded by today's code."""
    storage = FileStorage(str(path), read_only=True)
    oids = {record.oid for txn in storage.iterator() for record in txn}
    db = ZODB.DB(storage)
    try:
        conn = db.open()
        for oid in sorted(oids):
            yield conn.get(oid)
    finally:
        db.close()


def names_in_jobs(path: Path) -> tuple[set[str], set[str]]:
    """The method names and annotation keys of the stored jobs; fails on unlisted ones."""
    method_names: set[str] = set()
    annotation_keys: set[str] = set()
    for obj in _stored_objects(path):
        if isinstance(obj, Job):
            if obj._callable_name is not None:
                method_names.add(obj._callable_name)
            if obj._annotations is not None:
                annotation_keys.update(obj._annotations.keys())
    assert method_names <= set(schema.METHOD_NAMES)
    assert {k for k in annotation_keys if k.startswith("zasync.")} <= set(schema.ANNOTATION_KEYS)
    return method_names, annotation_keys


def test_a_real_workload_stores_only_listed_names(tmp_path, monkeypatch):
    path = tmp_path / "Data.fs"
    db = ZODB.DB(FileStorage(str(path)))
    try:
        conn = db.open()
        queues = zasync.install_queues(conn, "reports")
        queue = queues[""]
        queue.quotas.create("one", size=1)
        tally = conn.root()["tally"] = Tally()
        transaction.commit()
        module, source = _module_that_goes(tmp_path, monkeypatch)

        now = zasync.utcnow()
        slices = [Job(square_sum, n * 10, n * 10 + 10) for n in range(3)]
        for piece in slices:
            piece.addCallback(Job(record, tally))
        with_callbacks = queue.put(Job(operator.mul, 3, 3))
        with_callbacks.addCallbacks(success=Job(operator.neg), failure=Job(repr))
        failing_callback = queue.put(Job(operator.mul, 0, 5))
        failing_callback.addCallback(Job(operator.truediv, 1))  # 1 / 0
        jobs = {
            "result": queue.put(Job(operator.mul, 6, 7)),
            "failure": queue.put(Job(operator.truediv, 1, 0)),  # the default policy decides
            "never": queue.put(Job(operator.truediv, 2, 0), retry_policy_factory=NeverRetry),
            "named": queue.put(Job(operator.add, 1, 1), retry_policy_factory="forever"),
            "declared": queue.put(
                Job(operator.truediv, 3, 0),
                retry=zasync.Retry(attempts=2, on=(ZeroDivisionError,), backoff=0),
            ),
            "serial": queue.put(serial(Job(operator.add, 1, 2), Job(operator.add, 3, 4))),
            "parallel": queue.put(parallel(*slices, postprocess=combine)),
            "quota": queue.put(Job(operator.add, 40, 2), quota_names=("one",)),
            "filtered": queues["reports"].put(Job(operator.pow, 2, 10)),
            "late": queue.put(
                Job(operator.mul, 1, 1),
                begin_after=now - datetime.timedelta(hours=1),
                begin_by=datetime.timedelta(seconds=1),
            ),
            "callbacks": with_callbacks,
            "failing callback": failing_callback,
        }
        jobs["dependant"] = queue.put(
            Job(operator.add, 5, 5),
            after=[jobs["result"]],
            unique_key="schema",
            unique_until="finished",
        )
        zasync.add_schedule(queue, "schema", operator.add, 1, 2, every=3600, priority=1)
        queue.rate_limits.set("schema", 100, per=1)
        jobs["limited"] = queue.put(Job(operator.add, 3, 4), rate_limits=["schema"])
        jobs["time limited"] = queue.put(Job(operator.add, 4, 4), timeout=30)
        queues["reports"].default_timeout = 600
        cancelled = queue.put(Job(operator.mul, 5, 5))
        gone = queue.put(Job(module.work))
        transaction.commit()
        _forget(module, source)
        assert zasync.cancel(cancelled, "changed my mind") == "cancelled"

        agents = [
            AgentSpec(queue="", threads=2),
            AgentSpec(queue="reports", threads=1, filter=callable),
        ]
        with zasync.testing.running_dispatcher(db, agents=agents, poll_interval=0.05):
            zasync.testing.wait_for(
                lambda: _all_completed(list(jobs.values())) and queue.quarantined,
                PATIENCE,
                "the workload never finished",
            )
        transaction.begin()
        assert jobs["result"].result == 42
        assert jobs["parallel"].result == tally.total == sum(i * i for i in range(30))
        assert jobs["late"].result.check(zasync.TimeoutError)
        assert failing_callback.callbacks[0].result.check(ZeroDivisionError)
        assert [entry.id for entry in queue.quarantined] == [int.from_bytes(gone._p_oid, "big")]
        conn.close()
    finally:
        db.close()

    globals_, references = scan(path)
    assert unlisted(globals_ | references) == set()
    # The workload did store what it was meant to exercise.
    assert {
        "zasync.model.queue.Queues",
        "zasync.model.lanes.Lane",
        "zasync.model.lanes.LaneBucket",
        "zasync.model.quota.Quota",
        "zasync.model.agent.Agent",
        "zasync.model.completed.CompletedCollection",
        "zasync.model.dispatchers.DispatcherAgents",
        "zasync.model.job.Job",
        "zasync.model.job.success_or_failure",
        "zasync.model.job.complete_started_job_arguments",
        "zasync.model.patterns._start",
        "zasync.model.patterns._serial_step",
        "zasync.model.patterns._parallel_step",
        "zasync.model.retry.callback_retry_policy_factory",
        "zasync.model.retry.RetryCommonFourTimes",
        "zasync.model.retry.RetryCommonForever",
        "zasync.model.retry.NeverRetry",
        "zasync.model.backoff.Retry",
        "zasync.model.backoff.BackoffRetryPolicy",
        "zasync.model.dependencies.dependency_done",
        "zasync.model.periodic.Schedule",
        "zasync.model.ratelimit.RateLimits",
        "zasync.model.ratelimit.RateLimit",
        "zasync.model.periodic.fire",
        "zasync.model.failure.Failure",
        "zasync.errors.TimeoutError",
        "zasync.errors.CancelledError",
        "zasync.demo.Tally",
        "zasync.demo.record",
    } <= globals_ | references
    assert "zasync.model.job.Job" in references

    method_names, annotation_keys = names_in_jobs(path)
    assert "fail" in method_names and "_callback" in method_names
    assert {schema.CANCEL, schema.PARALLEL_DONE, schema.ATTEMPTS} <= annotation_keys
    assert schema.SCHEDULE_TICK in annotation_keys


def test_the_scan_finds_an_unlisted_global(tmp_path):
    from zasync.model.lanes import Share

    path = tmp_path / "Data.fs"
    db = ZODB.DB(FileStorage(str(path)))
    try:
        conn = db.open()
        conn.root()["unlisted"] = persistent.mapping.PersistentMapping({"share": Share({1})})
        conn.root()["tally"] = Tally()
        transaction.commit()
    finally:
        db.close()
    globals_, references = scan(path)
    assert unlisted(globals_ | references) == {"zasync.model.lanes.Share"}
    assert {"persistent.mapping.PersistentMapping", "zasync.demo.Tally"} <= references


# -- databases written by earlier releases ---------------------------------------------


def test_there_is_a_database_of_an_earlier_release():
    assert "0.1.0.dev0" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_a_database_of_an_earlier_release_keeps_its_jobs_and_runs(version, tmp_path):
    path = tmp_path / "Data.fs"
    shutil.copyfile(DATABASES / version / "Data.fs", path)
    written_then = last_tid(path)
    with zasync.open_database(f"file://{path}", serve=False) as opened:
        conn = opened.db.open()
        golden = conn.root()["golden"]
        queues = zasync.get_queues(conn)
        # Written before pausing existed: every queue reads as running.
        assert [queue.paused for queue in queues.values()] == [False] * len(queues)
        # Written before time limits existed: no job and no queue has one.
        assert [queue.default_timeout for queue in queues.values()] == [None] * len(queues)
        assert golden["pending"][0].timeout is None

        # What was finished keeps its outcome.
        done = golden["done"]
        assert [job.status for job in done] == [COMPLETED] * len(done)
        assert done[0].result == 42
        assert isinstance(done[1].result, Failure) and done[1].result.check(ZeroDivisionError)
        assert done[2].result == [3, 7]
        assert done[3].result == sum(i * i for i in range(10))
        assert done[4].result == 1024
        assert done[5].result == 9 and done[5].callbacks[0].result == -9
        cancelled = golden["cancelled"].result
        assert cancelled.check(CancelledError)
        assert cancelled.getErrorMessage() == "changed my mind"
        gone_id = int.from_bytes(golden["gone"]._p_oid, "big")
        assert gone_id in [entry.id for entry in queues[""].quarantined]

        # What was waiting runs now; the job of the dead worker is recovered.
        pending, crashed, scheduled = golden["pending"], golden["crashed"], golden["scheduled"]
        assert scheduled.status == PENDING
        agents = [AgentSpec(queue=name, threads=2) for name in ("", "reports", "crash")]
        with zasync.testing.running_dispatcher(opened.db, agents=agents, poll_interval=0.05):
            zasync.testing.wait_for(
                lambda: _all_completed([*pending, crashed]),
                PATIENCE,
                "the old database's pending jobs never completed",
            )
        transaction.begin()
        assert [job.result for job in pending] == [42, 42, 41, 42, 8555, 42]
        assert pending[-1].callbacks[0].result == -42
        assert conn.root()["golden_tally"].total == 8555
        assert crashed.result is None
        assert scheduled.status == PENDING
        assert gone_id in [entry.id for entry in queues[""].quarantined]
        conn.close()

    # What today's code wrote into the old database names only listed globals.
    globals_, references = scan(path, after=written_then)
    assert unlisted(globals_ | references) == set()
    assert "zasync.model.job.Job" in globals_ | references
    method_names, _annotation_keys = names_in_jobs(path)
    assert "handleInterrupt" in method_names
