"""The 2026 API: snake_case names beside zc.async's, typed jobs, job ids, relative times."""

from __future__ import annotations

import datetime
import inspect
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import zasync
from zasync import Failure, Job
from zasync.model.agent import Agent
from zasync.model.queue import Queue
from zasync.ops import views
from zasync.runtime.dispatcher import Dispatcher
from zasync.runtime.local import Local
from zasync.runtime.pool import AgentThreadPool

import support
from processes import zasync_cli

#: (class, snake_case alias, zc.async's name): each pair is one function.
ALIASES = [
    (Job, "add_callback", "addCallback"),
    (Job, "add_callbacks", "addCallbacks"),
    (Job, "get_retry_policy", "getRetryPolicy"),
    (Job, "handle_interrupt", "handleInterrupt"),
    (Job, "resume_callbacks", "resumeCallbacks"),
    (Job, "assigner_uuid", "assignerUUID"),
    (Queue, "put_back", "putBack"),
    (Agent, "claim_job", "claimJob"),
    (Agent, "job_completed", "jobCompleted"),
    (Failure, "raise_exception", "raiseException"),
    (Failure, "get_error_message", "getErrorMessage"),
    (Failure, "get_traceback", "getTraceback"),
    (Failure, "print_traceback", "printTraceback"),
    (Local, "get_job", "getJob"),
    (Local, "get_queue", "getQueue"),
    (Local, "get_dispatcher", "getDispatcher"),
    (Local, "live_annotation", "getLiveAnnotation"),
    (Local, "set_live_annotation", "setLiveAnnotation"),
    (AgentThreadPool, "get_size", "getSize"),
    (AgentThreadPool, "set_size", "setSize"),
    (Dispatcher, "get_status_info", "getStatusInfo"),
    (Dispatcher, "get_job_info", "getJobInfo"),
    (Dispatcher, "get_active_job_ids", "getActiveJobIds"),
    (Dispatcher, "get_poll_info", "getPollInfo"),
    (Dispatcher, "iter_polls", "iterPolls"),
    (Dispatcher, "get_statistics", "getStatistics"),
]


@pytest.mark.parametrize(
    ("cls", "snake", "camel"), ALIASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_snake_names_are_the_camel_functions(cls: type, snake: str, camel: str) -> None:
    assert inspect.getattr_static(cls, snake) is inspect.getattr_static(cls, camel)


def test_stored_method_names_stay_camel(root: Any) -> None:
    """A job wrapping ``job.handle_interrupt`` stores the name databases already hold."""
    inner = Job(support.mock_work)
    root["inner"] = inner
    wrapper = Job(inner.handle_interrupt)
    assert wrapper._callable_name == "handleInterrupt"
    assert Job(inner.resume_callbacks)._callable_name == "resumeCallbacks"
    assert Job.handleInterrupt.__name__ == "handleInterrupt"


def test_begin_after_accepts_a_timedelta_from_the_clock(queue: Any, now: Any) -> None:
    job = queue.put(support.mock_work, begin_after=datetime.timedelta(minutes=5))
    assert job.begin_after == zasync.clock.utcnow() + datetime.timedelta(minutes=5)
    other = Job(support.mock_work)
    other.begin_after = datetime.timedelta(hours=1)
    assert other.begin_after == zasync.clock.utcnow() + datetime.timedelta(hours=1)
    with pytest.raises(zasync.NaiveDatetimeError):
        queue.put(support.mock_work, begin_after=datetime.datetime(2030, 1, 1))
    with pytest.raises(zasync.NaiveDatetimeError):
        other.begin_after = datetime.datetime(2030, 1, 1)
    assert other.begin_after == zasync.clock.utcnow() + datetime.timedelta(hours=1)


def test_typed_generic_job_pickles_like_before(root: Any) -> None:
    job = Job[int](support.mock_work)
    assert "__orig_class__" not in job.__dict__
    assert job.__getstate__() == Job(support.mock_work).__getstate__()
    root["typed"] = job
    transaction.commit()
    assert type(job) is Job and job() == 42 and job.result == 42


def test_a_job_has_an_id_once_stored(root: Any) -> None:
    job = Job(support.mock_work)
    with pytest.raises(zasync.NotStoredError, match="commit"):
        job.id
    root["j"] = job
    transaction.commit()
    assert job.id == str(views.job_id(job)) and job.id.isdigit()
    assert views.get_job(root._p_jar, job.id) is job


def test_callbacks_show_the_users_callables(queue: Any) -> None:
    job = queue.put(support.mock_work)
    wrapper = job.addCallbacks(success=support.success, failure=Job(support.failure))
    only_failure = job.add_callbacks(failure=support.failure)
    transaction.commit()
    assert "success_or_failure" not in repr(wrapper)
    assert "``support.success() | on failure support.failure()``" in repr(wrapper)
    assert "``on failure support.failure()``" in repr(only_failure)
    assert views.callable_name(wrapper) == "support.success | support.failure"
    assert views.callable_name(only_failure) == "support.failure"
    tree = views.job_info(queue._p_jar, job.id)["callbacks"]
    assert [c["callable"] for c in tree] == ["support.success | support.failure", "support.failure"]


def test_job_id_round_trips_through_the_cli(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "Data.fs"
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        queue = zasync.install_queues(conn)[""]
        job = queue.put(support.mock_work)
        job.addCallbacks(success=support.success)
        tm.commit()
        ident = job.id
        conn.close()
    finally:
        db.close()
    data = json.loads(zasync_cli("--db", f"file://{path}", "job", ident, "--json").stdout)
    assert str(data["id"]) == ident and data["callable"] == "support.mock_work"
    assert [c["callable"] for c in data["callbacks"]] == ["support.success"]


def test_typed_example_checks_with_mypy() -> None:
    """``Job[R]`` and ``Queue.put`` give type checkers the result type (tests/unit/typed_examples)."""
    here = pathlib.Path(__file__).parent / "typed_examples"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--hide-error-context",
            str(here / "typed_jobs.py"),
            str(here / "wrong_jobs.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    where = [(pathlib.Path(e.split(":")[0]).name, e.split(":")[1]) for e in errors]
    assert where == [
        ("wrong_jobs.py", "14"),
        ("wrong_jobs.py", "15"),
        ("wrong_jobs.py", "25"),
    ], done.stdout
