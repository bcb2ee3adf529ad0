"""The job's state machine: the table in IJob's docstring is what the methods do.

Each row of the table names a transition method; every method moves a job
exactly as its row says, refuses every other stored status with
BadStatusError (changing nothing), and no module but zasync.model._record writes
a job's status or its times.
"""

from __future__ import annotations

import ast
import datetime
import pathlib
import re
import shutil
from typing import Any

import pytest
import transaction
import ZODB.FileStorage

import zasync
from zasync import ACTIVE, CALLBACKS, COMPLETED, NEW, BadStatusError, Failure, Job, Status
from zasync.interfaces import FINISHED, STARTED, WAITING, IJob

import support

SRC = pathlib.Path(zasync.__file__).parent
#: The attributes only zasync.model._record (the job record) may assign.
GUARDED = {"_status", "_active_start", "_active_end", "_begin_after", "_result"}
STORED = (NEW, ACTIVE, CALLBACKS, COMPLETED)
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
#: The arguments each transition method takes in this test.
ARGUMENTS: dict[str, tuple[Any, ...]] = {"_mark_active": (NOW,), "_store_result": (42,)}


def transitions() -> list[tuple[set[Status], str, Status, str]]:
    """The rows of the table in IJob's docstring: (from statuses, event, to, method name)."""
    doc = IJob.__doc__ or ""
    rows = []
    for line in doc.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != 4 or not cells[3].startswith("``_"):
            continue
        sources, event, target, method = cells
        allowed = set(STORED) if sources == "any" else {Status[s] for s in sources.split(", ")}
        rows.append((allowed, event, Status[target], method.strip("`").split("(")[0]))
    return rows


def state(job: Job) -> dict[str, Any]:
    return {k: job.__dict__.get(k) for k in GUARDED}


def job_in(status: Status) -> Job:
    job = Job(support.mock_work)
    job._status = status.value  # test set-up: put the job straight in that status
    return job


def test_the_table_lists_every_transition_method() -> None:
    methods = [row[3] for row in transitions()]
    assert methods == ["_mark_active", "_unclaim", "_store_result", "_mark_completed", "_reset"]
    assert all(callable(getattr(Job, m)) for m in methods)


@pytest.mark.parametrize("row", transitions(), ids=lambda row: row[3])
def test_each_method_moves_as_its_row_says(row: tuple[set[Status], str, Status, str]) -> None:
    allowed, _event, target, method = row
    for status in STORED:
        job = job_in(status)
        before = state(job)
        if status in allowed:
            getattr(job, method)(*ARGUMENTS.get(method, ()))
            assert job.stored_status == target, (method, status)
        else:
            with pytest.raises(BadStatusError) as info:
                getattr(job, method)(*ARGUMENTS.get(method, ()))
            assert info.value.job is job
            assert state(job) == before, (method, status)


def test_transitions_set_and_clear_the_times() -> None:
    job = Job(support.mock_work)
    job._mark_active(NOW)
    assert job.active_start == NOW and job.active_start_us == zasync.clock.to_stamp(NOW)
    job._unclaim()
    assert job.active_start is None and job.stored_status == NEW
    job._mark_active(NOW)
    job._store_result(Failure(ValueError("no")))
    assert job.active_end is not None and isinstance(job.result, Failure)
    job._mark_completed()
    assert job.stored_status == COMPLETED


def test_stored_status_is_read_only_and_raw(queue: Any) -> None:
    job = queue.put(support.mock_work)
    assert job.status == zasync.PENDING and job.stored_status == NEW
    with pytest.raises(AttributeError):
        job.stored_status = ACTIVE  # type: ignore[misc]


def test_derived_sets() -> None:
    assert {NEW, zasync.PENDING, zasync.ASSIGNED} == WAITING
    assert {ACTIVE, CALLBACKS, COMPLETED} == STARTED
    assert {CALLBACKS, COMPLETED} == FINISHED
    assert set(Status) == WAITING | STARTED and not WAITING & STARTED


def _assignments(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, attribute) of every assignment to a guarded attribute of any object."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
            args = node.args
            if len(args) >= 2 and isinstance(args[1], ast.Constant) and args[1].value in GUARDED:
                found.append((node.lineno, str(args[1].value)))
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr in GUARDED:
                    found.append((sub.lineno, sub.attr))
    return found


def test_only_the_job_record_writes_status_and_times() -> None:
    """The transition methods of model/_record.py are the only writers (job.py included)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "model" / "_record.py":
            continue
        for line, attr in _assignments(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(SRC)}:{line} assigns {attr}")
    assert offenders == []


def test_the_ast_check_catches_a_write() -> None:
    tree = ast.parse("job._status = 'new'\njob._active_start += 1\nsetattr(j, '_active_end', 1)")
    assert [a for _, a in _assignments(tree)] == ["_status", "_active_start", "_active_end"]


def test_failures_stored_by_old_versions_still_match(tmp_path: pathlib.Path) -> None:
    """0.1.0.dev0 stored ``zasync.interfaces.CancelledError``: both names still check."""
    source = pathlib.Path(__file__).parents[1] / "data" / "databases" / "0.1.0.dev0" / "Data.fs"
    shutil.copy(source, tmp_path / "Data.fs")
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "Data.fs"), read_only=True))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        failure = conn.root()["golden"]["cancelled"].result
        assert failure.type_name == "zasync.interfaces.CancelledError"
        assert failure.type is zasync.CancelledError
        for name in (
            "CancelledError",
            "zasync.interfaces.CancelledError",
            "zasync.errors.CancelledError",
        ):
            assert failure.check(name) == name
        assert failure.check(zasync.CancelledError) is zasync.CancelledError
        new = Failure(zasync.CancelledError("now"))
        assert new.check("zasync.interfaces.CancelledError") and new.check("CancelledError")
        assert not new.check("zasync.interfaces.TimeoutError")
        conn.close()
    finally:
        db.close()
