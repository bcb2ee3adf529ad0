"""The monitoring queries, the operator actions and cancellation, on a real database."""

from __future__ import annotations

import datetime
import json
import operator

import pytest
import transaction

import zasync
from zasync.interfaces import BadStatusError, CancelledError, UnknownJobError
from zasync.model.cancellation import CANCEL
from zasync.ops import actions, queries, views
from zasync.testing import running_dispatcher, wait_for, wait_for_result

import support


@pytest.fixture
def world(zasync_db, zasync_conn, tmp_path):
    """Jobs in every state: succeeded, failed, cancelled, pending, active (blocked), callbacks."""
    support.events.clear()
    queue = zasync.get_queue(zasync_conn)
    queue.quotas.create("reports", size=2)
    ok = queue.put(zasync.Job(operator.mul, 6, 7))
    bad = queue.put(zasync.Job(operator.truediv, 1, 0))
    ok.addCallback(zasync.Job(support.describe))
    transaction.commit()
    with running_dispatcher(zasync_db, threads=2, poll_interval=0.1) as dispatcher:
        wait_for_result(ok)
        wait_for_result(bad)
        wait_for(lambda: ok.key is not None and bad.key is not None)  # filed
        active = queue.put(zasync.Job(support.until_cancelled, "world"))
        later = queue.put(
            zasync.Job(operator.add, 1, 2),
            begin_after=zasync.utcnow() + datetime.timedelta(hours=1),
            quota_names=("reports",),
        )
        doomed = queue.put(
            zasync.Job(operator.add, 2, 2),
            begin_after=zasync.utcnow() + datetime.timedelta(hours=2),
        )
        signal = doomed.addCallback(zasync.Job(support.got_result))
        transaction.commit()
        assert support.event("world-started").wait(30)
        ids = {
            name: views.job_id(job)
            for name, job in [
                ("ok", ok),
                ("bad", bad),
                ("active", active),
                ("later", later),
                ("doomed", doomed),
                ("signal", signal),
            ]
        }
        yield zasync_db, zasync_conn, ids, dispatcher
        support.event("world").set()


def test_ids_parse_and_unknown_ids_are_clear_errors(world):
    _db, conn, ids, _ = world
    assert views.parse_job_id("42") == 42 and views.parse_job_id("0x2a") == 42
    with pytest.raises(ValueError, match="not a job id: 'abc'"):
        views.parse_job_id("abc")
    with pytest.raises(UnknownJobError, match="no job with id 999999"):
        views.job_info(conn, "999999")
    # The root object exists but is not a job.
    with pytest.raises(UnknownJobError):
        views.job_info(conn, 0)
    assert views.get_job(conn, str(ids["ok"])).result == 42


def test_job_info_of_a_success_and_a_failure(world):
    _, conn, ids, _ = world
    transaction.begin()
    ok = views.job_info(conn, ids["ok"])
    assert ok["status"] == "completed" and ok["outcome"] == "succeeded"
    assert ok["callable"] == "_operator.mul" and ok["args"] == ["6", "7"]
    assert ok["result"] == 42 and ok["traceback"] is None
    assert ok["queue"] == "" and ok["agent"] == "main" and ok["dispatcher"]
    assert [c["callable"] for c in ok["callbacks"]] == ["support.describe"]
    assert [h["status"] for h in ok["history"]] == ["pending", "active", "callbacks", "completed"]
    json.dumps(ok)  # JSON-ready
    bad = views.job_info(conn, ids["bad"])
    assert bad["outcome"] == "failed" and bad["error_type"] == "builtins.ZeroDivisionError"
    assert "ZeroDivisionError" in bad["traceback"]
    assert "ZeroDivisionError" in views.traceback(conn, ids["bad"])
    with pytest.raises(ValueError, match="has no traceback"):
        views.traceback(conn, ids["ok"])


def test_listing_filters_by_state_glob_and_time(world):
    _, conn, ids, _ = world
    transaction.begin()

    def listed(**kw):
        return {j["id"] for j in queries.list_jobs(conn, queries.make_filter(**kw), limit=None)}

    assert listed(states="failed") == {ids["bad"]}
    assert listed(states="succeeded") >= {ids["ok"]}
    assert listed(states="pending") == {ids["later"], ids["doomed"]}
    assert listed(states="active") == {ids["active"]}
    assert listed(states=["pending", "active"]) == {ids["later"], ids["doomed"], ids["active"]}
    assert listed(callable_glob="_operator.add") == {ids["later"], ids["doomed"]}
    assert listed(callable_glob="*.truediv") == {ids["bad"]}
    # Due in an hour or two: "before 0s ago" excludes them, "since 1m ago" keeps them.
    assert ids["later"] not in listed(before="0s")
    assert ids["later"] in listed(since="1m")
    assert ids["bad"] in listed(since="10m", states="failed")
    assert listed(before="1d", states="failed") == set()
    assert queries.count_jobs(conn, queries.make_filter(states="pending")) == 2
    assert len(queries.list_jobs(conn, limit=2)) == 2


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"states": "finished"}, "unknown state 'finished'; choose from pending"),
        ({"since": "yesterday"}, "bad since: not a duration: 'yesterday'"),
        ({"before": "5x"}, "bad before"),
    ],
)
def test_bad_filters_say_what_is_wrong(kw, message):
    with pytest.raises(ValueError, match=message):
        queries.make_filter(**kw)


def test_unknown_queue_is_refused(world):
    _, conn, _, _ = world
    with pytest.raises(LookupError, match="no queue named 'nope'"):
        queries.list_jobs(conn, queries.make_filter(queue="nope"))


def test_counts_stats_last_and_next(world):
    _, conn, ids, _ = world
    transaction.begin()
    counts = queries.counts_by_queue(conn)[""]
    assert counts["pending"] == 2 and counts["active"] == 1 and counts["failed"] == 1
    assert counts["succeeded"] == 1  # callbacks live on their job, not in a collection
    stats = queries.job_stats(conn)
    assert stats["counts"]["failed"] == 1
    assert stats["durations"]["failed"]["longest"]["id"] == ids["bad"]
    assert stats["durations"]["active"]["shortest"]["id"] == ids["active"]
    assert queries.next_pending(conn)["id"] == ids["later"]
    last_failed = queries.last_completed(conn, queries.make_filter(states="failed"))
    assert last_failed["id"] == ids["bad"]
    assert queries.last_completed(conn, queries.make_filter(callable_glob="nothing*")) is None


def test_dispatchers_and_agents_show_liveness_and_running_jobs(world):
    _, conn, ids, dispatcher = world
    transaction.begin()
    (entry,) = queries.dispatchers(conn)
    assert entry["uuid"] == str(dispatcher.UUID) and entry["state"] == "alive"
    assert entry["last_ping"] is not None
    (agent,) = entry["agents"]
    assert agent["name"] == "main" and ids["active"] in [j["id"] for j in agent["jobs"]]
    assert queries.uuids(conn) == [str(dispatcher.UUID)]
    (queue,) = queries.queues(conn)
    assert queue["quotas"] == [{"name": "reports", "size": 2, "used": 0}]
    line = queries.timeline(conn, datetime.timedelta(minutes=10), buckets=5)
    assert sum(b["failed"] for b in line["buckets"]) == 1
    assert sum(b["succeeded"] for b in line["buckets"]) == 1


def test_cancel_a_pending_job_runs_its_callbacks(world):
    db, conn, ids, _ = world
    assert actions.cancel_job(db, ids["doomed"], "not needed")["outcome"] == "cancelled"
    transaction.begin()
    doomed = views.get_job(conn, ids["doomed"])
    assert doomed.status == zasync.COMPLETED and doomed.result.check(CancelledError)
    assert doomed.get_annotation(CANCEL)["reason"] == "not needed"
    assert views.get_job(conn, ids["signal"]).status == zasync.COMPLETED  # callback ran
    assert len(zasync.get_queue(conn)) == 1  # left the queue
    info = views.job_info(conn, ids["doomed"])
    assert info["outcome"] == "cancelled" and info["queue"] == ""
    assert ids["doomed"] in {
        j["id"] for j in queries.list_jobs(conn, queries.make_filter(states="cancelled"))
    }
    with pytest.raises(BadStatusError, match="cannot cancel"):
        actions.cancel_job(db, ids["doomed"])


def test_cancel_a_running_job_is_cooperative(world):
    db, conn, ids, _ = world
    assert actions.cancel_job(db, ids["active"])["outcome"] == "requested"
    job = views.get_job(conn, ids["active"])
    failure = wait_for_result(job)
    assert failure.check(CancelledError)
    assert views.job_info(conn, ids["active"])["cancel_requested"] is True


def test_retry_a_failed_job_puts_a_linked_copy(world):
    db, conn, ids, _ = world
    done = actions.retry_job(db, ids["bad"])
    assert done["retried"] == ids["bad"] and done["id"] != ids["bad"]
    transaction.begin()
    new = views.get_job(conn, done["id"])
    assert new.args == [1, 0] and new.get_annotation(views.RETRY_OF) == ids["bad"]
    assert views.job_info(conn, ids["bad"])["retried_as"] == [done["id"]]
    assert wait_for_result(new).check(ZeroDivisionError)
    with pytest.raises(BadStatusError, match="did not fail"):
        actions.retry_job(db, ids["ok"])
    with pytest.raises(UnknownJobError):
        actions.retry_job(db, 999999)


def test_remove_only_pending_jobs(world):
    db, conn, ids, _ = world
    with pytest.raises(BadStatusError, match="only pending jobs"):
        actions.remove_job(db, ids["ok"])
    assert actions.remove_job(db, ids["later"]) == {"removed": ids["later"], "queue": ""}
    transaction.begin()
    assert views.get_job(conn, ids["later"]).status == zasync.NEW
    assert queries.count_jobs(conn, queries.make_filter(states="pending")) == 1


def test_resize_quota_and_agent(world):
    db, conn, _, dispatcher = world
    assert actions.set_quota_size(db, "", "reports", 5)["old_size"] == 2
    with pytest.raises(LookupError, match="no quota named 'x'"):
        actions.set_quota_size(db, "", "x", 5)
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        actions.set_quota_size(db, "", "reports", -1)
    prefix = str(dispatcher.UUID)[:8]
    done = actions.set_agent_size(db, "", prefix, "main", size=7, threads=3)
    assert (done["size"], done["threads"]) == (7, 3)
    with pytest.raises(LookupError, match="no dispatcher 'zzz'"):
        actions.set_agent_size(db, "", "zzz", "main", size=2)
    with pytest.raises(LookupError, match="no agent 'other'"):
        actions.set_agent_size(db, "", prefix, "other", size=2)
    transaction.begin()
    assert zasync.get_queue(conn).quotas["reports"].size == 5


def test_purge_forgets_old_completed_jobs(world):
    db, conn, _ids, _ = world
    transaction.begin()
    before = queries.count_jobs(conn, queries.make_filter(states="completed"))
    assert actions.purge_completed(db, datetime.timedelta(days=1))["purged"] == {"": 0}
    done = actions.purge_completed(db, datetime.timedelta(0))
    assert done["purged"][""] == before > 0
    transaction.begin()
    assert queries.count_jobs(conn, queries.make_filter(states="completed")) == 0
    with pytest.raises(ValueError):
        actions.purge_completed(db, datetime.timedelta(seconds=-1))


def test_a_quarantined_job_has_every_key_that_zasync_job_reads(conn, queue):
    sound = queue.put(zasync.Job(operator.add, 1, 1))
    bad = queue.put(zasync.Job(operator.add, 2, 2))
    transaction.commit()
    queue.quarantine(bad, "cannot be loaded", bad._queue_key)
    transaction.commit()
    shown = views.job_info(conn, views.job_id(bad))
    assert shown["status"] == "quarantined"
    # The keys cli/read.py's ``job`` command subscripts (the others it reads with .get).
    read = {"attempts", "callbacks", "dead_letter", "history", "result", "traceback", "unmet"}
    read |= {"waits_for", "needed_by"}
    assert read <= set(shown) and read <= set(views.job_info(conn, views.job_id(sound)))


def test_a_quarantined_job_lists_with_the_keys_of_a_sound_one(conn, queue):
    sound = queue.put(zasync.Job(operator.add, 1, 1))
    bad = queue.put(zasync.Job(operator.add, 2, 2))
    transaction.commit()
    queue.quarantine(bad, "cannot be loaded", bad._queue_key)
    transaction.commit()
    rows = {row["id"]: row for row in queries.list_jobs(conn, None, None)}
    assert set(rows[views.job_id(sound)]) <= set(rows[views.job_id(bad)])
