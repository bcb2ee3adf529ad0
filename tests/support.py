"""Importable functions and classes used as job callables in the tests.

Jobs are pickled, so their callables must be importable by name.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import persistent
import transaction
from ZODB.POSException import ConflictError

from zasync.model.failure import Failure

calls: list[Any] = []


def call() -> str:
    print("hello world")
    return "my result"


def multiply(first: Any, second: Any, third: Any = None) -> Any:
    result = first * second
    if third is not None:
        result *= third
    return result


def mock_work() -> int:
    return 42


def raise_runtime_error() -> None:
    raise RuntimeError("Bad Things Happened Here")


def raise_value_error() -> None:
    raise ValueError("no good")


def show(*args: Any) -> None:
    print(*args)


def show_status(job: Any, *args: Any) -> Any:
    print(job.status)
    return job.status


def show_status_of(job: Any, *args: Any) -> None:
    print(job.status)


def success(res: Any) -> None:
    print(f"success! {res!r}")


def also_success(res: Any) -> None:
    print(f"also a success! {res!r}")


def failure(res: Any) -> None:
    print(f"failure. {res!r}")


def return_zero(res: Any) -> int:
    return 0


def describe(res: Any) -> str:
    return f"the result is {res!r}"


def call_job(job: Any, *args: Any) -> Any:
    return job()


def arg_call(ob: Any, ob2: Any = None, value: Any = None, op: Any = None) -> None:
    if op is None:
        op = operator.mul
    ob.value = op(ob.value, value)
    if ob2 is not None:
        ob2.value = op(ob2.value, value)


def return_job(job: Any) -> Any:
    return job


class Demo:
    """A plain object with a method, used as a bound-method callable."""

    counter = 0

    def increase(self, value: int = 1) -> None:
        self.counter += value


class PersistentDemo(persistent.Persistent):
    """A persistent object whose changes a job makes and a test checks."""

    counter = 0
    value = 0

    def increase(self, value: int = 1) -> None:
        self.counter += value


def call_and_raise(demo: PersistentDemo) -> None:
    demo.counter += 1
    print(demo.counter)
    raise RuntimeError("Bad Things Happened Here")


def return_explicit_failure(demo: PersistentDemo) -> Failure:
    demo.counter += 1
    print(demo.counter)
    return Failure(RuntimeError("explicit"))


class Flaky:
    """Raises ``error`` the first ``times`` calls, then returns 42; counts calls."""

    def __init__(self, error: type[BaseException], times: int) -> None:
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()
        return 42


flaky_registry: dict[str, Flaky] = {}


def flaky(name: str) -> int:
    return flaky_registry[name]()


def always_conflict() -> None:
    calls.append("always_conflict")
    raise ConflictError()


async def async_mock_work(value: int = 42) -> int:
    return value


async def async_raise() -> None:
    raise RuntimeError("async went wrong")


def imaginary_network_call() -> str:
    return "200 OK"


def scribble(res: Any) -> str:
    return f"{res}: SCRIBBLED"


def handle_name_error(f: Failure) -> str:
    f.trap(NameError)
    return "I handled a name error"


def raise_name_error() -> None:
    raise NameError("undefined_name")


def only_or(job: Any) -> bool:
    return job.callable is operator.or_


def is_interrupt_handler(job: Any) -> bool:
    return getattr(job.callable, "__name__", None) == "handleInterrupt"


def increment(counter: PersistentDemo) -> int:
    counter.counter += 1
    return counter.counter


# -- retry policies and commit failures used by the tests -----------------------

import datetime  # noqa: E402

from zasync.model.retry import NeverRetry, RetryCommonFourTimes  # noqa: E402

reply: dict[str, Any] = {"value": False}


class StubPolicy(NeverRetry):
    """Answers every question with ``reply['value']``."""

    def jobError(self, failure: Any, data_cache: Any) -> Any:
        return reply["value"]

    def commitError(self, failure: Any, data_cache: Any) -> Any:
        return reply["value"]

    def interrupted(self) -> Any:
        return reply["value"]


def return_lock() -> Any:
    """Returns what no database can store (a lock cannot be pickled)."""
    return threading.Lock()


def raise_type_error() -> None:
    raise TypeError("wrong type")


class FailingResource:
    """A transaction participant whose vote raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.transaction_manager = transaction.manager

    def abort(self, txn: Any) -> None:
        pass

    def tpc_begin(self, txn: Any) -> None:
        pass

    def commit(self, txn: Any) -> None:
        pass

    def tpc_vote(self, txn: Any) -> None:
        raise self.error

    def tpc_finish(self, txn: Any) -> None:
        pass

    def tpc_abort(self, txn: Any) -> None:
        pass

    def sortKey(self) -> str:
        return "~failing"


commit_failures: dict[str, int] = {"remaining": 0, "calls": 0}


def work_with_failing_commit(error_name: str) -> int:
    """Returns 42, but makes the commit fail while commit_failures['remaining'] > 0."""
    import ZODB.POSException

    commit_failures["calls"] += 1
    if commit_failures["remaining"] != 0:
        commit_failures["remaining"] -= 1
        error = {"conflict": ZODB.POSException.ConflictError, "value": ValueError}[error_name]()
        transaction.get().join(FailingResource(error))
    return 42


def in_an_hour() -> datetime.timedelta:
    return datetime.timedelta(hours=1)


# -- serial / parallel patterns (README examples, AC-53) ---------------------------


def double(value: int) -> int:
    return value * 2


def identity(value: Any) -> Any:
    return value


def serial_main(job: Any) -> Any:
    """Returns a job put in the same queue: the chain's result becomes this job's."""
    return job.queue.put(Job(double, 21))


def post_process(*values: int) -> int:
    return sum(values)


def gather(post: Any, queue: Any, expected: int, result: Any) -> None:
    post.args.append(result)
    if len(post.args) == expected:
        queue.put(post)


def parallel_main(job: Any) -> Any:
    queue = job.queue
    post = Job(post_process)
    for value in (7, 14, 21):
        queue.put(Job(identity, value)).addCallback(Job(gather, post, queue, 3))
    return post


def count_call(*args: Any) -> None:
    calls.append("called")


def add_callback_from_elsewhere(job: Any, res: Any) -> None:
    """While ``job`` runs its callbacks, another connection adds one more."""
    import threading

    calls.append("called")
    db, oid = job._p_jar.db(), job._p_oid

    def add() -> None:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            conn.get(oid).addCallback(count_call)
            tm.commit()
        finally:
            conn.close()

    thread = threading.Thread(target=add)
    thread.start()
    thread.join()


# -- jobs for dispatcher tests ------------------------------------------------------
import threading  # noqa: E402

from zasync import local  # noqa: E402
from zasync.model.job import Job  # noqa: E402

events: dict[str, threading.Event] = {}


def event(name: str) -> threading.Event:
    return events.setdefault(name, threading.Event())


def put_through_local_queue() -> Any:
    return local.getQueue().put(Job(multiply, 21, 2))


def live_conversation() -> str:
    calls.append("live_conversation")
    local.setLiveAnnotation("hello", "from thread!")
    reply = local.getLiveAnnotation("reply", timeout=240, poll=0.05)
    mine = local.getJob().get_annotation("reply", "MISSING")
    return f"reply is {reply!r}.  Locally it is {mine}."


def block_until(name: str, result: Any = 42) -> Any:
    """Signals '<name>-started', then waits for event <name>."""
    event(f"{name}-started").set()
    if not event(name).wait(60):
        raise RuntimeError(f"event {name} never set")
    return result


def report_progress(steps: int) -> int:
    for i in range(1, steps + 1):
        local.progress(i, steps, f"step {i}")
    return steps


def add_all(*jobs: Any) -> Any:
    return sum(job.result for job in jobs)


order: list[int] = []


def record_order(value: int) -> int:
    order.append(value)
    return value


# -- jobs for real worker processes (they coordinate through files) ----------------

import os  # noqa: E402
import time as _time  # noqa: E402


def wait_for_file(marker: str, release: str, result: Any = 42, *ignored: Any) -> Any:
    """Append a line to ``marker`` (one per run), then wait until ``release`` exists."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    deadline = _time.monotonic() + 900  # a safety net: the test releases it, or stops the worker
    while not os.path.exists(release):
        if _time.monotonic() > deadline:
            raise RuntimeError("never released")
        _time.sleep(0.02)
    return result


def got_result(res: Any) -> str:
    return f"I got result {res!r}"


def reject(res: Any) -> None:
    raise ValueError(f"cannot use {res!r}")


def annotate_status_then_block(name: str) -> int:
    """Records its own status as a live annotation, then waits for event <name>."""
    local.setLiveAnnotation("status", str(local.getJob().status))
    return block_until(name)


def report_pid(number: int) -> int:
    """A 'report' job: returns the process id that ran it."""
    return os.getpid()


def plain_pid(number: int) -> int:
    """Any other job: returns the process id that ran it."""
    return os.getpid()


def is_report(job: Any) -> bool:
    """A job filter accepting only report jobs."""
    return getattr(job.callable, "__name__", None) == "report_pid"


def is_not_report(job: Any) -> bool:
    """A job filter refusing report jobs."""
    return not is_report(job)


class Counter(persistent.Persistent):
    """One job's effect counter in the fault-injection suite."""

    value = 0


def apply_effect(number: int, pause: float = 0.01) -> int:
    """Changes the database: increments counter ``number`` and appends to the shared log.

    The fault-injection suite checks afterwards that each effect was applied
    exactly once: a killed attempt must have been rolled back.
    """
    import uuid

    from zasync import local

    root = local.getJob()._p_jar.root()
    root["fault_counters"][number].value += 1
    # Random keys spread concurrent appends over the log's buckets.
    root["fault_log"][(uuid.uuid4().hex, number)] = os.getpid()
    _time.sleep(pause)  # the workload's own duration, so kills meet running jobs
    return number


def create_effect(number: int, pause: float = 0.01) -> int:
    """:func:`apply_effect`, and new persistent objects: a mapping holding a list, per run.

    The new objects get fresh oids from the storage.  A storage that gave out
    an oid twice (a ZEO client's prefetched oids after its server restarted)
    would overwrite an object of an earlier job: the suite checks afterwards
    that every mapping in ``root["fault_objects"]`` still holds its own key.
    With ``$ZASYNC_FAULT_COMMITS`` set, the time the job's transaction
    committed is appended to that file (:func:`note_commit`).
    """
    import uuid

    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping

    from zasync import local

    job = local.getJob()
    root = job._p_jar.root()
    commits = os.environ.get("ZASYNC_FAULT_COMMITS")
    if commits:
        job._p_jar.transaction_manager.get().addAfterCommitHook(note_commit, (commits, number))
    token = uuid.uuid4().hex
    root["fault_objects"][(token, number)] = PersistentMapping(
        token=token, number=number, items=PersistentList([number, os.getpid()])
    )
    return apply_effect(number, pause)


def note_commit(status: bool, path: str, number: int) -> None:
    """After-commit hook: append ``number`` and the time to ``path`` if the commit succeeded.

    One short write in append mode: lines from many processes do not mix.
    """
    if status:
        with open(path, "a") as out:
            out.write(f"{number} {_time.time():.6f}\n")


def until_cancelled(name: str) -> str:
    """Signals '<name>-started', then checks for a cancellation request (or event <name>)."""
    event(f"{name}-started").set()
    # A safety net, not a test's deadline: the job must outlast every test of a module
    # on a loaded machine; it ends when cancelled, released, or when its worker stops.
    deadline = _time.monotonic() + 900
    while _time.monotonic() < deadline:
        local.raise_if_cancelled()
        if event(name).wait(0.05):
            return "released"
    raise RuntimeError("never cancelled")


def fail_unless_file(path: str) -> str:
    """Fails while ``path`` does not exist: a job that a retry can fix."""
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing")
    return "fixed"


def sleep_then(seconds: float, result: Any = None) -> Any:
    """Takes ``seconds`` (a job that stays active long enough to be seen running)."""
    _time.sleep(seconds)
    return result


def exit_in_poll_thread(job: Any) -> bool:
    """A job filter that ends the thread calling it (the dispatcher's poll thread)."""
    raise SystemExit("a filter ended the poll thread")


class Blob(persistent.Persistent):
    """Bytes a job stores as an object of their own (the full-disk test)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def store_bytes(number: int, size: int = 20_000) -> int:
    """Stores ``size`` random bytes under ``number`` in the root's ``stored`` tree."""
    from zasync import local

    root = local.getJob()._p_jar.root()
    root["stored"][number] = Blob(os.urandom(size))
    return number


def wait_and_note_commits(marker: str, release: str, notes: str) -> int:
    """``wait_for_file``, noting each attempt to commit its result (True/False) in ``notes``."""
    import transaction

    def note(committed: bool) -> None:
        with open(notes, "a") as f:
            f.write(f"{committed}\n")

    transaction.get().addAfterCommitHook(note)
    return int(wait_for_file(marker, release))


class NoInterruptions(RetryCommonFourTimes):
    """The default policy, except that a job it governs is never retried after an interruption."""

    max_interruptions = 0


class Unreachable(ConnectionError):
    """A stand-in for a service that does not answer (module level: workers load it)."""


def fail_twice_then_double(value: int) -> int:
    """Raise Unreachable on a job's first two attempts, as its stored history counts them."""
    import zasync

    if len(zasync.local.getJob().failed_attempts) < 2:
        raise Unreachable(f"no answer for {value}")
    return 2 * value


@contextlib.contextmanager
def another_connection(db: Any) -> Iterator[tuple[Any, Any]]:
    """A second connection with its own transaction manager (another process, in effect)."""
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    try:
        tm.begin()
        yield conn, tm
    finally:
        tm.abort()
        conn.close()


def sum_of_results(*jobs: Any) -> int:
    """The sum of the results of ``jobs`` (a job put after them reads them)."""
    return sum(job.result for job in jobs)


def raise_runtime_error_lines() -> None:
    raise RuntimeError("first line\nsecond line\n" + "x" * 5000)


def periodic_work() -> str:
    """A schedule's job: it says which tick it was."""
    from zasync import clock, local
    from zasync.schema import SCHEDULE_TICK

    tick = local.getJob().get_annotation(SCHEDULE_TICK)[1]
    return clock.from_stamp(tick).isoformat()


# -- jobs for time limits (tests/unit/test_time_limits.py, the worker and fault tests) --

#: What the time-limited jobs below saw after their limit, in this process.
after_limit: list[str] = []


def _write_to_root(key: str) -> Any:
    """Sets ``root[key]`` in the running job's transaction (not committed by itself)."""
    root = local.getJob()._p_jar.root()
    root[key] = "written by a job past its limit"
    return root


def write_then_spin(key: str) -> str:
    """Writes ``root[key]``, then runs Python code until it is stopped."""
    _write_to_root(key)
    deadline = _time.monotonic() + 900  # a safety net: it ends when stopped
    while _time.monotonic() < deadline:
        pass
    raise RuntimeError("never stopped")


def write_then_block(key: str, name: str) -> str:
    """Writes ``root[key]``, waits inside C code for event <name>, then tries to commit.

    What befalls it after the wait goes into :data:`after_limit`.
    """
    root = _write_to_root(key)
    try:
        event(name).wait(900)
    except Exception as error:  # raised as soon as the C call returns
        after_limit.append(f"{name}: interrupted: {type(error).__name__}")
    try:
        root[key + "-after"] = "written after the limit"
        transaction.commit()
    except Exception as error:
        after_limit.append(f"{name}: commit refused: {type(error).__name__}")
        raise
    after_limit.append(f"{name}: committed")
    return "committed"


def swallow_limit_then_commit(key: str) -> str:
    """Writes ``root[key]``, ignores the time limit's exception, then commits by itself."""
    _write_to_root(key)
    deadline = _time.monotonic() + 900
    while _time.monotonic() < deadline:
        try:
            while _time.monotonic() < deadline:
                pass
        except Exception as error:
            after_limit.append(f"{key}: caught {type(error).__name__}")
            break
    try:
        transaction.commit()
    except Exception as error:
        after_limit.append(f"{key}: commit refused: {type(error).__name__}")
        return "refused"
    after_limit.append(f"{key}: committed")
    return "committed"


def slow_first_attempt(path: str, key: str) -> str:
    """Spins (writing ``root[key]``) while ``path`` does not exist, creating it: fast next time."""
    if os.path.exists(path):
        return "second attempt"
    with open(path, "w") as marker:
        marker.write("first attempt ran")
    return write_then_spin(key)


def outcome_name(result: Any) -> str:
    """A callback: the name of the error a job failed with, or 'succeeded'."""
    return result.type_name if isinstance(result, Failure) else "succeeded"


def note_start_write_then_sleep(key: str, path: str) -> str:
    """Notes its start in ``path`` (outside the database), writes ``root[key]``, sleeps in C."""
    with open(path, "a") as out:
        out.write(f"{key}\n")
    _write_to_root(key)
    _time.sleep(900)  # one C call: the time limit's exception waits for it to return
    return "slept"


def note_start_write_then_commit_in_a_loop(key: str, path: str) -> str:
    """Notes its start and writes ``root[key]``; once stopped, keeps trying to commit writes."""
    with open(path, "a") as out:
        out.write(f"{key}\n")
    _write_to_root(key)
    deadline = _time.monotonic() + 900
    while _time.monotonic() < deadline:  # computes until stopped
        try:
            while _time.monotonic() < deadline:
                pass
        except Exception:
            break
    for attempt in range(100):  # then tries, again and again, to store something
        try:
            _write_to_root(f"{key}-{attempt}")
            transaction.commit()
        except Exception:
            with contextlib.suppress(Exception):
                transaction.abort()
        _time.sleep(0.01)
    return "gave up"


def lose_the_database() -> str:
    """Raises a disconnect error each time: its retry policy waits 5 s or more before the next."""
    from ZEO.Exceptions import ClientDisconnected

    raise ClientDisconnected("the server went away (simulated)")


def return_a_slow_inner_job(seconds: float) -> Any:
    """Returns, at once, a job that takes ``seconds``: the outer job waits for its result."""
    return local.getQueue().put(Job(sleep_then, seconds, "inner done"))


def append_then_sleep(path: str, seconds: float, result: Any = None) -> Any:
    """A callback: appends a line to ``path`` (its runs can be counted), then takes ``seconds``."""
    with open(path, "a") as out:
        out.write("ran\n")
    _time.sleep(seconds)
    return "called back"


def return_inner_job_when_released(name: str, path: str) -> Any:
    """Notes each run in ``path``, waits for event <name>, then returns a new job (3 * 2)."""
    with open(path, "a") as out:
        out.write("ran\n")
    event(f"{name}-started").set()
    if not event(name).wait(60):
        raise RuntimeError(f"event {name} never set")
    return local.getQueue().put(Job(multiply, 3, 2))
