"""zasync.zope's settings and start-up, without Zope: product-config text, environment, database."""

from __future__ import annotations

import uuid

import pytest
import transaction

import zasync
from zasync.errors import ConfigurationError
from zasync.runtime import dispatcher as dispatcher_module
from zasync.testing import wait_for_result
from zasync.zope import lifecycle
from zasync.zope.settings import load


def test_defaults_put_jobs_only():
    settings = load({}, environ={}, instance_home="/srv/zope")
    assert settings.worker is False and settings.queues == ("",)
    assert str(settings.uuid_file) == "/srv/zope/var/zasync-uuid.txt"
    assert [a.threads for a in settings.agent_specs()] == [2]


def test_product_config_text_and_the_environment_which_wins():
    settings = load(
        {"worker": "on", "threads": "3", "queues": 'reports "mail out"', "poll-interval": "0.5"},
        environ={"ZASYNC_ZOPE_THREADS": "6", "ZASYNC_ZOPE_GRACE": "10", "PATH": "/bin"},
        instance_home=None,
    )
    assert settings.worker is True and settings.threads == 6 and settings.grace == 10.0
    assert settings.queues == ("", "reports", "mail out") and settings.poll_interval == 0.5


def test_agents_as_the_worker_takes_them():
    settings = load({"agents": "/main:2+0 reports/slow:1"}, environ={}, instance_home=None)
    specs = settings.agent_specs()
    assert [(a.queue, a.name, a.threads, a.prefetch) for a in specs] == [
        ("", "main", 2, 0),
        ("reports", "slow", 1, 4),
    ]


@pytest.mark.parametrize(
    ("config", "environ", "message"),
    [
        ({"threads": "0"}, {}, "<product-config zasync> threads: "),
        ({"threads": "many"}, {}, "<product-config zasync> threads: "),
        ({}, {"ZASYNC_ZOPE_POLL_INTERVAL": "-1"}, r"\$ZASYNC_ZOPE_POLL_INTERVAL: "),
        ({"worker": "sometimes"}, {}, "worker: must be on or off"),
        ({"wrker": "on"}, {}, "wrker: unknown setting; known: worker, threads"),
        ({"agents": "/main:x"}, {}, "agents: "),
        ({"queues": '"unclosed'}, {}, "queues: cannot split"),
    ],
)
def test_a_bad_setting_stops_the_start_in_one_line(config, environ, message):
    with pytest.raises(ConfigurationError, match=message) as refused:
        load(config, environ=environ, instance_home=None)
    assert "\n" not in str(refused.value)


def test_start_installs_the_queues_and_runs_a_worker_that_stops_gracefully(
    zasync_bare_db, tmp_path
):
    (tmp_path / "var").mkdir()
    settings = load(
        {"worker": "on", "queues": "reports", "poll-interval": "0.1"},
        environ={},
        instance_home=str(tmp_path),
    )
    dispatcher = lifecycle.start(zasync_bare_db, settings)
    conn = zasync_bare_db.open()
    try:
        assert dispatcher is lifecycle.running() and dispatcher.activated
        kept = uuid.UUID((tmp_path / "var" / "zasync-uuid.txt").read_text().strip())
        assert kept == dispatcher.UUID
        queues = zasync.get_queues(conn)
        assert sorted(queues) == ["", "reports"]
        job = queues[""].put(zasync.Job(pow, 2, 10))
        transaction.commit()
        assert wait_for_result(job) == 1024
    finally:
        assert lifecycle.stop(5) is True
        transaction.abort()
        conn.close()
        dispatcher_module.clear()
    assert lifecycle.running() is None and not dispatcher.activated


def test_an_instance_that_runs_no_worker_still_installs_its_queues(zasync_bare_db):
    settings = load({"queues": "mail"}, environ={}, instance_home=None)
    assert lifecycle.start(zasync_bare_db, settings) is None
    conn = zasync_bare_db.open()
    assert sorted(zasync.get_queues(conn)) == ["", "mail"]
    conn.close()


def test_the_queues_of_the_agents_are_installed_too(zasync_bare_db, tmp_path):
    settings = load({"agents": "mail/main:1"}, environ={}, instance_home=None)
    assert lifecycle.start(zasync_bare_db, settings.model_copy(update={"worker": False})) is None
    conn = zasync_bare_db.open()
    assert sorted(zasync.get_queues(conn)) == ["", "mail"]
    conn.close()


def test_an_unknown_queue_database_is_refused(zasync_bare_db):
    with pytest.raises(ConfigurationError, match="no database named 'queues'"):
        lifecycle.queue_database(zasync_bare_db, "queues")
    assert lifecycle.queue_database(zasync_bare_db, None) is zasync_bare_db
