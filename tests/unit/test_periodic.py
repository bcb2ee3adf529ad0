"""Periodic jobs: schedules whose ticks each put exactly one job, DST-correct, missed ticks by policy."""

from __future__ import annotations

import datetime
import operator
import zoneinfo

import pytest
import transaction

import zasync
from zasync import clock
from zasync.errors import InvalidValueError
from zasync.model import periodic
from zasync.schema import SCHEDULE_TICK

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)


def at(*args, tz=UTC):
    return datetime.datetime(*args, tzinfo=tz)


def drain(agent, when):
    """Move the clock to ``when`` and run every due job there, as a worker would."""
    clock.set_now(when)
    ran = []
    while (job := agent.claimJob()) is not None:
        transaction.commit()
        job()
        transaction.commit()
        ran.append(job)
    return ran


def work_jobs(ran):
    return [job for job in ran if job.callable is not periodic.fire]


def ticks_of(jobs):
    return [clock.from_stamp(job.get_annotation(SCHEDULE_TICK)[1]) for job in jobs]


def test_every_tick_puts_one_job_and_the_next_trigger(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    schedule = zasync.add_schedule(queue, "sum", operator.add, 1, 2, every=60, priority=3)
    transaction.commit()
    assert schedule.next_run == at(2026, 1, 1, 12, 0)  # an interval starts now
    first = work_jobs(drain(agent, at(2026, 1, 1, 12, 0)))
    assert [j.args for j in first] == [[1, 2]] and first[0].priority == 3
    assert schedule.next_run == at(2026, 1, 1, 12, 1) and schedule.runs == 1
    assert work_jobs(drain(agent, at(2026, 1, 1, 12, 0, 59))) == []  # not due yet
    second = work_jobs(drain(agent, at(2026, 1, 1, 12, 1)))
    assert ticks_of(second) == [at(2026, 1, 1, 12, 1)] and second[0].result == 3


def test_a_cron_schedule_follows_its_time_zone_across_dst(queue, agent):
    clock.set_now(at(2026, 3, 28, 12, 0))
    schedule = zasync.add_schedule(
        queue, "nightly", operator.add, 0, 0, cron="30 2 * * *", timezone="Europe/Paris"
    )
    transaction.commit()
    # 02:30 does not exist on 29 March in Paris: it fires at the change, 03:00 local.
    assert schedule.next_run == at(2026, 3, 29, 3, 0, tz=PARIS)
    ticks = list(zip(range(3), schedule.ticks_after(at(2026, 3, 28, 12, 0)), strict=False))
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for _, t in ticks] == [
        "29 03:00",
        "30 02:30",
        "31 02:30",
    ]
    autumn = [
        t for _, t in zip(range(2), schedule.ticks_after(at(2026, 10, 24, 12, 0)), strict=False)
    ]
    # 02:30 happens twice on 25 October: it fires once.
    assert [t.astimezone(PARIS).strftime("%d %H:%M %Z") for t in autumn] == [
        "25 02:30 CEST",
        "26 02:30 CET",
    ]


@pytest.mark.parametrize(
    "missed, expected",
    [
        ("each", [at(2026, 1, 1, 12, m) for m in range(0, 6)]),
        ("once", [at(2026, 1, 1, 12, 5)]),
        ("skip", []),
    ],
)
def test_missed_ticks_follow_the_schedules_policy(queue, agent, missed, expected):
    clock.set_now(at(2026, 1, 1, 12, 0))
    zasync.add_schedule(queue, "m", operator.add, 1, 1, every=60, missed=missed, grace=20)
    transaction.commit()
    # No worker ran for five and a half minutes.
    ran = work_jobs(drain(agent, at(2026, 1, 1, 12, 5, 30)))
    assert ticks_of(ran) == expected
    schedule = zasync.get_schedule(queue, "m")
    assert schedule.next_run == at(2026, 1, 1, 12, 6)
    assert schedule.last_tick == at(2026, 1, 1, 12, 5)


def test_skip_still_runs_a_tick_within_its_grace(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    zasync.add_schedule(queue, "s", operator.add, 1, 1, every=60, missed="skip", grace=20)
    transaction.commit()
    assert len(work_jobs(drain(agent, at(2026, 1, 1, 12, 0, 15)))) == 1


def test_a_paused_schedule_lets_ticks_pass_and_resumes_at_the_next(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    zasync.add_schedule(queue, "p", operator.add, 1, 1, every=60)
    transaction.commit()
    assert zasync.pause_schedule(queue, "p") is True
    assert zasync.pause_schedule(queue, "p") is False
    transaction.commit()
    assert work_jobs(drain(agent, at(2026, 1, 1, 12, 2))) == []
    assert zasync.resume_schedule(queue, "p") is True
    transaction.commit()
    assert ticks_of(work_jobs(drain(agent, at(2026, 1, 1, 12, 3)))) == [at(2026, 1, 1, 12, 3)]


def test_removing_a_schedule_takes_its_trigger_and_run_now_adds_one_job(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    schedule = zasync.add_schedule(queue, "r", operator.add, 2, 2, every=3600, start=at(2026, 1, 2))
    transaction.commit()
    extra = zasync.run_schedule_now(queue, "r")
    transaction.commit()
    assert [j.result for j in drain(agent, at(2026, 1, 1, 12, 1))] == [4]
    assert extra.get_annotation(SCHEDULE_TICK)[0] == "r" and schedule.runs == 1
    trigger = schedule._trigger
    zasync.remove_schedule(queue, "r")
    transaction.commit()
    assert trigger.status == zasync.NEW and zasync.schedules_of(queue) == []
    assert drain(agent, at(2026, 1, 3)) == []
    with pytest.raises(LookupError, match="has no schedule 'r'"):
        zasync.get_schedule(queue, "r")


def test_a_stale_trigger_does_nothing(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    old = zasync.add_schedule(queue, "x", operator.add, 1, 1, every=60)
    transaction.commit()
    assert periodic.fire(old, old._next - 1) == {"fired": 0, "stale": True}


def test_a_tick_whose_put_is_refused_loses_that_job_not_the_schedule(
    queue, agent, caplog, monkeypatch
):
    clock.set_now(at(2026, 1, 1, 12, 0))
    zasync.add_schedule(queue, "refused", operator.add, 1, 1, every=60)
    transaction.commit()

    def refuse(queue, schedule, tick):
        raise zasync.UnknownQuotaError("unknown quota name 'q': create it first")

    monkeypatch.setattr(periodic, "_put_work", refuse)
    assert work_jobs(drain(agent, at(2026, 1, 1, 12, 0))) == []
    schedule = zasync.get_schedule(queue, "refused")
    assert "unknown quota name 'q'" in schedule._last_error
    assert schedule.next_run == at(2026, 1, 1, 12, 1)  # the next tick is still coming
    assert "schedule 'refused' of queue '': UnknownQuotaError" in caplog.text


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": ""}, "cron must be a cron expression"),
        ({"every": 0.5}, "at least 1 seconds"),
        ({"every": "5m"}, "a number of seconds"),
        ({"every": 60, "cron": "* * * * *"}, "either cron= or every="),
        ({}, "either cron= or every="),
        ({"every": 60, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 60, "missed": "sometimes"}, "'once', 'each' or 'skip'"),
        ({"every": 60, "grace": -1}, "grace must be at least 0"),
        ({"every": 60, "priority": 500}, "from -100 to 100"),
        ({"every": 60, "retry": 0}, "must be from 1 to 1000"),
        ({"every": 60, "quota_names": ["nope"]}, "unknown quota name 'nope'"),
        ({"every": 60, "begin_by": 5}, "begin_by is a timedelta"),
    ],
)
def test_bad_schedules_are_refused_in_one_line_and_change_nothing(queue, options, message):
    with pytest.raises(InvalidValueError, match=message) as caught:
        zasync.add_schedule(queue, "bad", operator.add, 1, 1, **options)
    assert "\n" not in str(caught.value)
    assert queue._schedules is None and len(queue) == 0


def test_names_are_unique_per_queue_and_refused_when_bad(queue):
    zasync.add_schedule(queue, "n", operator.add, 1, 1, every=60)
    with pytest.raises(InvalidValueError, match="has a schedule named 'n' already"):
        zasync.add_schedule(queue, "n", operator.add, 1, 1, every=60)
    with pytest.raises(InvalidValueError, match="a schedule's name"):
        zasync.add_schedule(queue, "two\nlines", operator.add, 1, 1, every=60)
    with pytest.raises(zasync.NotPicklableError):
        zasync.add_schedule(queue, "lambda", lambda: None, every=60)
    assert [s.name for s in zasync.schedules_of(queue)] == ["n"] and len(queue) == 1


def test_describe_says_when_in_words(queue):
    assert (
        "09:00"
        in zasync.add_schedule(
            queue, "d", operator.add, 1, 1, cron="0 9 * * 1-5", timezone="Europe/Paris"
        ).describe()
    )
    assert zasync.add_schedule(queue, "e", operator.add, 1, 1, every=90).describe() == "every 90 s"


def test_a_trigger_claimed_a_moment_early_still_fires_its_tick(queue):
    clock.set_now(at(2026, 1, 1, 12, 0))
    schedule = zasync.add_schedule(queue, "early", operator.add, 1, 1, every=60)
    transaction.commit()
    clock.set_now(at(2026, 1, 1, 12, 0) - datetime.timedelta(milliseconds=3))
    assert periodic.fire(schedule, schedule._next)["fired"] == 1  # this clock lags a little
    assert schedule.next_run == at(2026, 1, 1, 12, 1)


def test_a_late_tick_on_the_night_clocks_go_back_fires_once(queue, agent):
    clock.set_now(at(2026, 10, 24, 12, 0))
    zasync.add_schedule(
        queue, "dst", operator.add, 1, 1, cron="30 2 * * *", timezone="Europe/Paris"
    )
    transaction.commit()
    # Claimed 35 minutes late, in the hour that happens twice (02:05 CET).
    ran = work_jobs(drain(agent, at(2026, 10, 25, 1, 5)))
    ran += work_jobs(drain(agent, at(2026, 10, 25, 3, 0)))
    assert len(ran) == 1
    assert zasync.get_schedule(queue, "dst").next_run > at(2026, 10, 25, 3, 0)


def test_a_long_outage_keeps_the_latest_ticks(queue, agent):
    clock.set_now(at(2026, 1, 1, 0, 0))
    once = zasync.add_schedule(queue, "once", operator.add, 1, 1, every=1)
    zasync.add_schedule(queue, "skip", operator.add, 1, 1, every=1, missed="skip", grace=5)
    zasync.add_schedule(queue, "each", operator.add, 1, 1, every=1, missed="each")
    transaction.commit()
    ran = work_jobs(drain(agent, at(2026, 1, 1, 1, 0, 0, 500000)))  # an hour down
    by_name = {}
    for job in ran:
        by_name.setdefault(job.get_annotation(SCHEDULE_TICK)[0], []).append(_tick(job))
    assert by_name["once"] == [at(2026, 1, 1, 1, 0)]
    assert by_name["skip"] == [at(2026, 1, 1, 1, 0)]
    assert len(by_name["each"]) == periodic.MAX_CATCH_UP and by_name["each"][-1] == at(
        2026, 1, 1, 1, 0
    )
    assert once.last_tick == at(2026, 1, 1, 1, 0)


def _tick(job):
    return clock.from_stamp(job.get_annotation(SCHEDULE_TICK)[1])


def test_ticks_that_fell_while_paused_put_nothing_even_if_fired_after_resume(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0, 30))
    zasync.add_schedule(queue, "quiet", operator.add, 1, 1, every=60, missed="each",
                        start=at(2026, 1, 1, 12, 1))  # fmt: skip
    zasync.pause_schedule(queue, "quiet")
    transaction.commit()
    clock.set_now(at(2026, 1, 1, 12, 5, 30))
    zasync.resume_schedule(queue, "quiet")
    transaction.commit()
    assert work_jobs(drain(agent, at(2026, 1, 1, 12, 5, 30))) == []
    assert ticks_of(work_jobs(drain(agent, at(2026, 1, 1, 12, 6)))) == [at(2026, 1, 1, 12, 6)]


def test_triggers_go_before_urgent_work(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    for number in range(3):
        queue.put(zasync.Job(operator.add, number, 0), priority=99)
    zasync.add_schedule(queue, "first", operator.add, 1, 1, every=60)
    transaction.commit()
    assert agent.claimJob().callable is periodic.fire


def test_a_lost_trigger_is_shown_and_resume_puts_a_new_one(queue, agent):
    clock.set_now(at(2026, 1, 1, 12, 0))
    schedule = zasync.add_schedule(queue, "lost", operator.add, 1, 1, every=60,
                                   start=at(2026, 1, 1, 13))  # fmt: skip
    transaction.commit()
    zasync.cancel(schedule._trigger)  # an operator cancels the trigger by mistake
    transaction.commit()
    assert periodic.trigger_lost(queue, schedule)
    assert zasync.resume_schedule(queue, "lost") is True
    transaction.commit()
    assert not periodic.trigger_lost(queue, schedule)
    assert ticks_of(work_jobs(drain(agent, at(2026, 1, 1, 13)))) == [at(2026, 1, 1, 13)]


def test_a_failing_tick_records_its_error_and_the_schedule_goes_on(queue, agent, monkeypatch):
    clock.set_now(at(2026, 1, 1, 12, 0))
    schedule = zasync.add_schedule(queue, "odd", operator.add, 1, 1, every=60)
    transaction.commit()
    monkeypatch.setattr(periodic, "_put_work", lambda *a: 1 / 0)
    drain(agent, at(2026, 1, 1, 12, 0))
    assert "ZeroDivisionError" in schedule._last_error and not periodic.trigger_lost(
        queue, schedule
    )
    monkeypatch.undo()
    assert len(work_jobs(drain(agent, at(2026, 1, 1, 12, 1)))) == 1
    assert schedule._last_error is None  # cleared by the next tick that put its job


def test_removing_a_schedule_whose_trigger_is_quarantined(queue):
    schedule = zasync.add_schedule(queue, "q", operator.add, 1, 1, every=60)
    transaction.commit()
    trigger = schedule._trigger
    queue.quarantine(trigger, "cannot be loaded", trigger._queue_key)
    transaction.commit()
    zasync.remove_schedule(queue, "q")
    transaction.commit()
    assert zasync.schedules_of(queue) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"every": 60, "begin_after": 5}, "begin_after cannot be given to a schedule's jobs"),
        ({"every": 60, "unique_key": "k"}, "unique_key cannot be given"),
        ({"every": 400 * 86400 * 10}, "every must be at most"),
        ({"every": 60, "start": at(2200, 1, 1)}, "start must be within"),
        ({"cron": "0 * * * * *"}, "five fields"),
    ],
)
def test_more_bad_schedules_are_refused(queue, options, message):
    with pytest.raises(InvalidValueError, match=message):
        zasync.add_schedule(queue, "bad", operator.add, 1, 1, **options)
    assert queue._schedules is None
