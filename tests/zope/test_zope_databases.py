"""Queues in a database of their own, beside the content: content and queue commits apart."""

from __future__ import annotations

from zope_instances import ZopeInstance

QUEUE_DATABASE = """
<zodb_db queues>
  <filestorage>
    path $INSTANCE/var/Queues.fs
  </filestorage>
  mount-point /zasync-queues
</zodb_db>
"""


def test_jobs_put_in_a_queue_database_run_as_their_user_on_the_content(tmp_path):
    instance = ZopeInstance(
        tmp_path / "instance",
        "worker on\nthreads 2\npoll-interval 0.2\ndatabase queues",
        extra_conf=QUEUE_DATABASE,
    )
    instance.start()
    try:
        assert instance.request("GET", "/@@zasync-where")[1] == {
            "queue_database": "queues",
            "in_main_root": False,
        }
        status, body = instance.request("POST", "/@@zasync-put", {"folder_id": "apart"})
        assert status == 200, body
        state = instance.wait_for_outcome(body["job"])
        assert state["outcome"] == "succeeded", state
        folder = instance.request("GET", "/@@zasync-folder", {"id": "apart"})[1]
        assert folder["made_by"] == "admin"
        assert (instance.home / "var" / "Queues.fs").stat().st_size > 0
    finally:
        instance.stop()


def test_an_unknown_queue_database_stops_the_start_in_one_line(tmp_path):
    instance = ZopeInstance(tmp_path / "instance", "database nowhere")
    try:
        instance.start()
    except AssertionError as error:
        assert "<product-config zasync> database: no database named 'nowhere'" in str(error)
    else:
        raise AssertionError("Zope started with a queue database that does not exist")
    finally:
        instance.stop()
