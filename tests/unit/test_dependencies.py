"""Dependencies: ``put(job, after=[a, b])`` waits until a and b are done, and never hangs."""

from __future__ import annotations

import operator

import pytest
import transaction
import ZODB
from ZODB.MappingStorage import MappingStorage

import zasync
from zasync import COMPLETED, PENDING, DependencyFailedError, Job
from zasync.errors import InvalidValueError
from zasync.model import dependencies, unique
from zasync.ops import queries, views

import support


def run_one(agent):
    """Claim the next due job and run it (its callbacks too), as a worker would."""
    job = agent.claimJob()
    assert job is not None, "nothing was due"
    transaction.commit()
    job()
    transaction.commit()
    return job


def test_a_job_waits_until_its_dependencies_are_done(queue, agent):
    a = queue.put(Job(operator.add, 1, 1))
    b = queue.put(Job(operator.add, 2, 2))
    c = queue.put(Job(operator.mul, 3, 3), after=[a, b])
    transaction.commit()
    assert c.status == PENDING and queue.waiting == [c] and len(queue) == 2
    assert run_one(agent) is a
    assert queue.waiting == [c]  # one of two done: still waiting
    assert run_one(agent) is b
    assert queue.waiting == [] and list(queue) == [c]
    assert run_one(agent) is c and c.result == 9


def test_a_failed_dependency_fails_the_job_without_running_it(queue, agent):
    bad = queue.put(Job(support.raise_value_error))
    job = queue.put(Job(support.count_call, "should not run"), after=[bad])
    job.addCallback(Job(support.describe))
    transaction.commit()
    support.calls.clear()
    run_one(agent)
    assert job._unmet and "failed: builtins.ValueError" in job._unmet
    run_one(agent)  # the claim hands out a job that fails it
    assert job.status == COMPLETED and job.result.check(DependencyFailedError)
    assert f"job {views.job_id(bad)} failed" in str(job.result)
    assert support.calls == []
    assert job.callbacks[0].status == COMPLETED  # its callbacks ran


def test_run_anyway_runs_after_a_failed_dependency(queue, agent):
    bad = queue.put(Job(support.raise_value_error))
    job = queue.put(Job(operator.add, 2, 3), after=[bad], on_dependency_failure="run")
    transaction.commit()
    run_one(agent)
    assert run_one(agent) is job and job.result == 5


def test_a_cancelled_dependency_settles_its_dependants(queue, agent):
    later = queue.put(Job(operator.add, 1, 1), begin_after=zasync.utcnow() + HOUR)
    job = queue.put(Job(operator.add, 2, 2), after=[later])
    transaction.commit()
    assert zasync.cancel(later, "not today") == "cancelled"
    transaction.commit()
    assert not dependencies.is_waiting(queue, job) and "CancelledError: not today" in job._unmet


@pytest.mark.parametrize("how", ["remove", "pull"])
def test_a_removed_dependency_never_leaves_a_job_waiting(queue, agent, how):
    dependency = queue.put(Job(operator.add, 1, 1))
    job = queue.put(Job(operator.add, 2, 2), after=[dependency])
    transaction.commit()
    if how == "remove":
        queue.remove(dependency)
    else:
        assert queue.pull() is dependency
    transaction.commit()
    assert queue.waiting == [] and list(queue) == [job]
    assert "was removed from its queue" in job._unmet
    run_one(agent)
    assert job.result.check(DependencyFailedError)


def test_a_discarded_quarantined_dependency_settles_its_dependants(queue, agent):
    dependency = queue.put(Job(operator.add, 1, 1))
    job = queue.put(Job(operator.add, 2, 2), after=[dependency])
    transaction.commit()
    queue.quarantine(dependency, "cannot be stored", dependency._queue_key)
    transaction.commit()
    assert queue.waiting == [job]  # it may still be released and run
    queue.discard_quarantined(int.from_bytes(dependency._p_oid, "big"))
    transaction.commit()
    assert queue.waiting == [] and "was dropped from its queue" in job._unmet


def test_cancelling_a_waiting_job_leaves_its_dependencies_alone(queue, agent):
    dependency = queue.put(Job(operator.add, 1, 1))
    job = queue.put(Job(operator.add, 2, 2), after=[dependency])
    transaction.commit()
    assert zasync.cancel(job) == "cancelled"
    transaction.commit()
    assert queue.waiting == [] and job.result.check(zasync.CancelledError)
    assert run_one(agent) is dependency and dependency.result == 2
    assert job.result.check(zasync.CancelledError) and len(queue) == 0


def test_dependencies_done_before_the_put_are_not_waited_for(queue, agent):
    good = queue.put(Job(operator.add, 1, 1))
    bad = queue.put(Job(support.raise_value_error))
    transaction.commit()
    run_one(agent)
    run_one(agent)
    ready = queue.put(Job(operator.add, 5, 5), after=[good])
    doomed = queue.put(Job(operator.add, 6, 6), after=[good, bad])
    transaction.commit()
    assert queue.waiting == [] and ready._unmet is None and doomed._unmet
    assert good.callbacks == ()  # nothing to tell: no callback added


def test_a_waiting_job_holds_its_unique_key(queue, agent):
    dependency = queue.put(Job(operator.add, 1, 1))
    job = queue.put(Job(operator.add, 2, 2), after=[dependency], unique_key="k")
    assert queue.put(Job(operator.add, 2, 2), after=[dependency], unique_key="k") is job
    transaction.commit()
    queue.remove(job)
    transaction.commit()
    assert unique.holder(queue, "k") is None


def test_views_show_the_graph_around_a_job_and_list_waiting_jobs(conn, queue, agent):
    a = queue.put(Job(operator.add, 1, 1))
    b = queue.put(Job(operator.add, 2, 2), after=[a])
    transaction.commit()
    info = views.job_info(conn, views.job_id(b))
    assert info["waiting"] is True and info["on_dependency_failure"] == "fail"
    assert [n["id"] for n in info["waits_for"]] == [views.job_id(a)]
    assert views.job_info(conn, views.job_id(a))["needed_by"][0]["id"] == views.job_id(b)
    listed = {row["id"] for row in queries.list_jobs(conn, queries.make_filter(["pending"]))}
    assert views.job_id(b) in listed


HOUR = __import__("datetime").timedelta(hours=1)


@pytest.mark.parametrize(
    "after, options, message",
    [
        ("job", {}, "takes a list of jobs"),
        ([1], {}, "takes jobs, not 1"),
        (["unstored"], {}, "not stored yet"),
        (["itself"], {}, "cannot wait for itself"),
        (["new"], {}, "in no queue: it would never finish"),
        (["stored"], {"on_dependency_failure": "maybe"}, "'fail' or 'run'"),
    ],
)
def test_bad_dependencies_are_refused_and_change_nothing(root, queue, after, options, message):
    stored = queue.put(Job(operator.add, 1, 1))
    root["new"] = Job(operator.add, 0, 0)  # stored, but in no queue
    transaction.commit()
    job = Job(operator.add, 2, 2)
    named = {"stored": stored, "unstored": Job(operator.add), "itself": job, "new": root["new"]}
    chosen = named["stored"] if after == "job" else [named.get(a, a) for a in after]
    with pytest.raises(InvalidValueError, match=message):
        queue.put(job, after=chosen, **options)
    assert len(queue) == 1 and queue._waiting is None and stored.callbacks == ()
    assert job._p_jar is None and job._after is None


def test_a_job_of_another_database_is_refused():
    databases: dict[str, ZODB.DB] = {}
    one = ZODB.DB(MappingStorage(), database_name="one", databases=databases)
    ZODB.DB(MappingStorage(), database_name="two", databases=databases)
    conn = one.open()
    try:
        queue = zasync.install_queues(conn)[""]
        elsewhere = conn.get_connection("two")
        other_queue = zasync.install_queues(elsewhere)[""]
        foreign = other_queue.put(Job(operator.add, 1, 1))
        transaction.commit()
        with pytest.raises(InvalidValueError, match="only wait for jobs of its own database"):
            queue.put(Job(operator.add, 2, 2), after=[foreign])
        assert len(queue) == 0
    finally:
        transaction.abort()
        conn.close()
        one.close()


def test_removing_a_waiting_job_settles_the_jobs_waiting_for_it(queue, agent):
    a = queue.put(Job(operator.add, 1, 1))
    b = queue.put(Job(operator.add, 2, 2), after=[a])
    c = queue.put(Job(operator.add, 3, 3), after=[b])
    transaction.commit()
    queue.remove(b)
    transaction.commit()
    assert queue.waiting == [] and "was removed" in c._unmet


def test_a_dependant_in_another_queue_settles_when_its_dependency_is_discarded(queues, agent):
    queues["other"] = zasync.Queue()
    transaction.commit()
    queue, other = queues[""], queues["other"]
    dependency = queue.put(Job(operator.add, 1, 1))
    job = other.put(Job(operator.add, 2, 2), after=[dependency])
    transaction.commit()
    queue.quarantine(dependency, "cannot be stored", dependency._queue_key)
    queue.discard_quarantined(int.from_bytes(dependency._p_oid, "big"))
    transaction.commit()
    assert other.waiting == [] and "was dropped from its queue" in job._unmet


def test_a_discarded_loadable_job_counts_as_removed_for_later_settling(queue, agent):
    a = queue.put(Job(operator.add, 1, 1))
    b = queue.put(Job(operator.add, 2, 2))
    job = queue.put(Job(operator.add, 3, 3), after=[a, b])
    transaction.commit()
    queue.quarantine(a, "cannot be stored", a._queue_key)
    queue.discard_quarantined(int.from_bytes(a._p_oid, "big"))
    transaction.commit()
    assert queue.waiting == [job]  # b has not finished yet
    assert run_one(agent) is b
    assert queue.waiting == [] and "was removed" in job._unmet


def test_forgetting_a_dropped_job_releases_its_key_and_settles_its_dependants(queue):
    dependency = queue.put(Job(operator.add, 1, 1), unique_key="k")
    job = queue.put(Job(operator.add, 2, 2), after=[dependency])
    transaction.commit()
    queue.drop_pending(dependency._queue_key)  # as for a job whose record cannot be loaded
    queue.forget(dependency._p_oid)
    transaction.commit()
    assert unique.holder(queue, "k") is None and queue.waiting == []
    assert "was dropped from its queue" in job._unmet


def test_a_job_put_again_forgets_what_it_waited_for(queue, agent):
    bad = queue.put(Job(support.raise_value_error))
    job = queue.put(Job(operator.add, 2, 2), after=[bad])
    transaction.commit()
    run_one(agent)
    queue.remove(job)
    queue.put(job)
    transaction.commit()
    assert job._unmet is None and job._after is None
    assert run_one(agent) is job and job.result == 4


def test_the_reason_is_one_bounded_line_along_a_chain(queue, agent):
    previous = queue.put(Job(support.raise_runtime_error_lines))
    chain = [previous]
    for _ in range(6):
        previous = queue.put(Job(operator.add, 1, 1), after=[previous])
        chain.append(previous)
    transaction.commit()
    for _ in range(len(chain)):
        run_one(agent)
    reasons = [job._unmet for job in chain[1:]]
    assert all("\n" not in r and len(r) <= 500 for r in reasons)
    assert chain[-1].result.check(DependencyFailedError)
    assert len(str(chain[-1].result)) < 1000
